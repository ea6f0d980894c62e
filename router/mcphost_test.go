package router

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestMCPHost: a request for the MCP host goes to Options.MCP, with or
// without a port and whatever the case, before anything of the data
// plane (it names no sandbox); any other host does not.
func TestMCPHost(t *testing.T) {
	rt := newTestRouter(t)
	served := 0
	rt.opts.MCP = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		w.WriteHeader(http.StatusTeapot)
	})
	rt.opts.MCPHosts = []string{"mcp.sandbox.example.com"}
	for _, tc := range []struct {
		host string
		mcp  bool
	}{
		{"mcp.sandbox.example.com", true},
		{"mcp.sandbox.example.com:8080", true},
		{"MCP.Sandbox.Example.com", true},
		{"mcp.sandbox.example.com.evil.test", false},
		{"xmcp.sandbox.example.com", false},
		{"router.internal", false},
		{"[::1]:80", false},
	} {
		served = 0
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Host = tc.host
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, r)
		if got := served == 1; got != tc.mcp || (tc.mcp && w.Code != http.StatusTeapot) {
			t.Errorf("%s: to MCP %v (status %d), want %v", tc.host, got, w.Code, tc.mcp)
		}
	}
}
