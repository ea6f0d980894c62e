package router

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/resolver"
)

const (
	uidA = "0b3c2e6a-1111-4222-8333-444455556666"
	uidB = "9f9f9f9f-1111-4222-8333-444455556666"
)

// uidSandbox is one running sandbox "sb1" with uidA, found by its name or
// by its UID.
type uidSandbox struct{}

func (uidSandbox) Lookup(k resolver.Key) resolver.Result {
	if k.UID == uidA || k.UID == "" && k.Name == "sb1" {
		return resolver.Result{State: resolver.StateRunning, Namespace: k.Namespace, Name: "sb1", UID: uidA, PodIP: netip.MustParseAddr("127.0.0.1")}
	}
	return resolver.Result{}
}
func (uidSandbox) Synced() bool { return true }

// TestHardening covers the inputs a hostile client sends.
func TestHardening(t *testing.T) {
	seen := make(chan http.Header, 16)
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	be := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		io.WriteString(w, "ok")
	})}
	go be.Serve(bln)
	t.Cleanup(func() { be.Close() })
	port := strconv.Itoa(bln.Addr().(*net.TCPAddr).Port)

	rt, err := New(Options{Resolver: uidSandbox{}, AllowLoopbackPodIP: true, Metrics: NewMetrics(prometheus.NewRegistry()),
		PodIPMode: PodIPDirect, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	srv, _ := startServer(t, rt, ServerOptions{HTTPAddr: "127.0.0.1:0", DrainTimeout: 5 * time.Second})

	raw := func(req string) (int, string) {
		c, err := net.Dial("tcp", srv.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		b, _ := io.ReadAll(c)
		s := string(b)
		if len(s) < 12 {
			t.Fatalf("short response %q", s)
		}
		code, _ := strconv.Atoi(s[9:12])
		return code, s
	}
	head := "Host: x\r\nX-Sandbox-Id: sb1\r\nX-Sandbox-Port: " + port + "\r\nConnection: close\r\n"

	tests := []struct {
		name     string
		req      string
		wantCode int
		wantBody string
	}{
		{"connect refused", "CONNECT 127.0.0.1:22 HTTP/1.1\r\n" + head + "\r\n", 405, "unsupported_method"},
		{"upgrade with body", "POST / HTTP/1.1\r\n" + head + "Upgrade: x\r\nConnection: Upgrade\r\nContent-Length: 3\r\n\r\nabc", 400, "upgrade_with_body"},
		{"uid of another instance", "GET / HTTP/1.1\r\n" + head + "X-Sandbox-Uid: " + uidB + "\r\n\r\n", 404, "sandbox_not_found"},
		{"matching uid", "GET / HTTP/1.1\r\n" + head + "X-Sandbox-Uid: " + uidA + "\r\n\r\n", 200, "ok"},
		// UUIDs are case-insensitive; Kubernetes writes them in lower case.
		{"matching uid in upper case", "GET / HTTP/1.1\r\n" + head + "X-Sandbox-Uid: " + strings.ToUpper(uidA) + "\r\n\r\n", 200, "ok"},
		// Direct mode outside the pod CIDRs: the hint is ignored and the
		// resolver's endpoint is used.
		{"direct outside pod cidrs", "GET / HTTP/1.1\r\n" + head + "X-Sandbox-Pod-Ip: 192.0.2.1\r\n\r\n", 200, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := raw(tt.req)
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("got %d %q, want %d with %q", code, body, tt.wantCode, tt.wantBody)
			}
		})
	}

	// Underscored headers never reach the sandbox; a forged traceparent
	// is not copied into the access log's trace id.
	code, _ := raw("GET / HTTP/1.1\r\n" + head + "X-Forwarded_For: 6.6.6.6\r\n\r\n")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	for len(seen) > 1 {
		<-seen
	}
	h := <-seen
	for k := range h {
		if strings.Contains(k, "_") {
			t.Fatalf("underscore header %q forwarded", k)
		}
	}
	forged := http.Header{"Traceparent": {`00-","sandbox":"victim","x":"aaaaaa-00f067aa0ba902b7-01`}}
	if id := traceIDFromHeader(forged); id != "" {
		t.Fatalf("forged trace id accepted: %q", id)
	}
}

// TestLoopbackEndpointRefused: a resolver answer naming a loopback address
// (a forged pod or Sandbox status) is not dialled unless the router was
// started for local tests.
func TestLoopbackEndpointRefused(t *testing.T) {
	rt, err := New(Options{Resolver: oneSandbox{netip.MustParseAddr("127.0.0.1")}, Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	req := httptest.NewRequest(http.MethodGet, "http://router/", nil)
	req.Header.Set("X-Sandbox-ID", "sb1")
	req.Header.Set("X-Sandbox-Port", "9090")
	w := httptest.NewRecorder()
	rt.ServeHTTP(w, req)
	if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), CodeUpstreamForbidden) {
		t.Fatalf("got %d %s, want 502 %s", w.Code, w.Body, CodeUpstreamForbidden)
	}
}
