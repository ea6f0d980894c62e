package mcpe2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The self-test of the harness: the TypeScript client against a tiny MCP
// server of the Go SDK behind a bearer-token check.

const selfTestToken = "selftest-token"

type echoIn struct {
	Text string `json:"text" jsonschema:"the text to echo"`
}

type echoOut struct {
	Echo string `json:"echo"`
}

// selfTestServer serves one tool, echo, and one resource at /mcp on
// 127.0.0.1, answering 401 to a request without "Bearer selfTestToken". It
// counts the requests it let through and those it refused.
type selfTestServer struct {
	url                 string
	authorized, refused atomic.Int64
}

func newSelfTestServer(t *testing.T) *selfTestServer {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "tsclient-selftest", Version: "0.0.1"},
		&mcp.ServerOptions{Instructions: "self-test of the TypeScript client harness"})
	mcp.AddTool(server, &mcp.Tool{Name: "echo", Description: "Echoes its text."},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, echoOut, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, echoOut{Echo: in.Text}, nil
		})
	server.AddResource(&mcp.Resource{URI: "test://hello", Name: "hello", MIMEType: "text/plain"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{
				{URI: req.Params.URI, MIMEType: "text/plain", Text: "hello, world"},
			}}, nil
		})
	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)

	s := &selfTestServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+selfTestToken {
			s.refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Bearer realm="selftest"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		s.authorized.Add(1)
		mcpHandler.ServeHTTP(w, r)
	})
	hs := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(hs.Close)
	s.url = hs.URL + "/mcp"
	return s
}

// tsClientDir installs the client (once per process) or fails the test.
func tsClientDir(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir, err := InstallTSClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func runTSClient(t *testing.T, url, token string, steps []TSStep) (TSResult, error) {
	t.Helper()
	dir := tsClientDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return RunTSClient(ctx, dir, url, token, steps)
}

func TestTSClientDrivesGoServer(t *testing.T) {
	t.Parallel()
	s := newSelfTestServer(t)
	res, err := runTSClient(t, s.url, selfTestToken, []TSStep{
		{Op: "listTools"},
		{Op: "callTool", Name: "echo", Arguments: map[string]any{"text": "hello from TypeScript"}},
		{Op: "callTool", Name: "no_such_tool", Arguments: map[string]any{}},
		{Op: "listResources"},
		{Op: "readResource", URI: "test://hello"},
		{Op: "ping"},
		{Op: "noSuchOp"},
	})
	if err != nil {
		t.Fatal(err)
	}

	if !slices.Contains(mcp.SupportedProtocolVersions(), res.ProtocolVersion) {
		t.Errorf("protocolVersion %q, want one of the Go SDK's %v", res.ProtocolVersion, mcp.SupportedProtocolVersions())
	}
	if res.ServerInfo.Name != "tsclient-selftest" || res.ServerInfo.Version != "0.0.1" {
		t.Errorf("serverInfo %+v", res.ServerInfo)
	}
	if res.Instructions != "self-test of the TypeScript client harness" {
		t.Errorf("instructions %q", res.Instructions)
	}

	var tools struct {
		Tools []struct {
			Name        string         `json:"name"`
			InputSchema map[string]any `json:"inputSchema"`
		} `json:"tools"`
	}
	if err := res.Decode(0, &tools); err != nil {
		t.Fatal(err)
	}
	if len(tools.Tools) != 1 || tools.Tools[0].Name != "echo" || tools.Tools[0].InputSchema["type"] != "object" {
		t.Errorf("listTools: %s", res.Results[0])
	}

	var call struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		StructuredContent echoOut `json:"structuredContent"`
		IsError           bool    `json:"isError"`
	}
	if err := res.Decode(1, &call); err != nil {
		t.Fatal(err)
	}
	if call.IsError || len(call.Content) != 1 || call.Content[0].Type != "text" ||
		call.Content[0].Text != "hello from TypeScript" || call.StructuredContent.Echo != "hello from TypeScript" {
		t.Errorf("callTool echo: %s", res.Results[1])
	}

	// An unknown tool fails that step, and the script goes on.
	if msg := res.Err(2); !strings.Contains(msg, "no_such_tool") {
		t.Errorf("callTool no_such_tool: %s, want an error naming the tool", res.Results[2])
	}

	var resources struct {
		Resources []struct {
			URI  string `json:"uri"`
			Name string `json:"name"`
		} `json:"resources"`
	}
	if err := res.Decode(3, &resources); err != nil {
		t.Fatal(err)
	}
	if len(resources.Resources) != 1 || resources.Resources[0].URI != "test://hello" {
		t.Errorf("listResources: %s", res.Results[3])
	}

	var read struct {
		Contents []struct {
			URI  string `json:"uri"`
			Text string `json:"text"`
		} `json:"contents"`
	}
	if err := res.Decode(4, &read); err != nil {
		t.Fatal(err)
	}
	if len(read.Contents) != 1 || read.Contents[0].Text != "hello, world" {
		t.Errorf("readResource: %s", res.Results[4])
	}

	if msg := res.Err(5); msg != "" {
		t.Errorf("ping: %s", msg)
	}
	if msg := res.Err(6); !strings.Contains(msg, "unknown op") {
		t.Errorf("noSuchOp: %s, want unknown op", res.Results[6])
	}
	if n := s.refused.Load(); n != 0 {
		t.Errorf("%d requests refused with the right token", n)
	}
	if s.authorized.Load() == 0 {
		t.Error("no request reached the MCP handler")
	}
}

func TestTSClientRefusedToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, token string }{
		{"wrong", "not-the-token"},
		{"none", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSelfTestServer(t)
			res, err := runTSClient(t, s.url, tc.token, []TSStep{{Op: "listTools"}})
			if err == nil {
				t.Fatalf("connected with token %q: %+v", tc.token, res)
			}
			if !strings.Contains(err.Error(), "HTTP 401") {
				t.Errorf("error %v, want \"HTTP 401\" in it", err)
			}
			if s.refused.Load() == 0 || s.authorized.Load() != 0 {
				t.Errorf("refused %d, authorized %d requests; want only refusals", s.refused.Load(), s.authorized.Load())
			}
		})
	}
}
