package mcp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// The endpoint end to end in process: the go-sdk's client over real
// sockets on 127.0.0.1, against the Handler on fakes.

const wantChallenge = `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`

// serve serves e's Handler on 127.0.0.1.
func serve(t *testing.T, e *env) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	return srv
}

// bearer adds a bearer token to every request.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

func clientWith(srv *httptest.Server, token string) *http.Client {
	return &http.Client{Transport: bearerTransport{token: token, base: srv.Client().Transport}}
}

// connect opens an MCP session as token's owner, as the go-sdk client
// does by default: it probes with server/discover (protocol 2026-07-28),
// which a stateful server refuses, then initializes (2025-11-25).
func connect(t *testing.T, srv *httptest.Server, token string, opts *sdk.ClientOptions) (*sdk.ClientSession, error) {
	t.Helper()
	return connectAt(t, srv, token, opts, "")
}

// connectAt opens a session at a protocol version ("": the default).
func connectAt(t *testing.T, srv *httptest.Server, token string, opts *sdk.ClientOptions, version string) (*sdk.ClientSession, error) {
	t.Helper()
	client := sdk.NewClient(&sdk.Implementation{Name: "test-client", Version: "1"}, opts)
	var so *sdk.ClientSessionOptions
	if version != "" {
		so = &sdk.ClientSessionOptions{ProtocolVersion: version}
	}
	cs, err := client.Connect(context.Background(), &sdk.StreamableClientTransport{
		Endpoint: srv.URL + Path, HTTPClient: clientWith(srv, token), MaxRetries: -1,
	}, so)
	if err == nil {
		t.Cleanup(func() { cs.Close() })
	}
	return cs, err
}

func mustConnect(t *testing.T, srv *httptest.Server, token string, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	cs, err := connect(t, srv, token, opts)
	if err != nil {
		t.Fatalf("connect as %s: %v", token, err)
	}
	return cs
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// post sends one raw JSON-RPC POST to /mcp.
func post(t *testing.T, srv *httptest.Server, auth, sessionID, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+Path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if sessionID != "" {
		req.Header.Set("Mcp-Session-Id", sessionID)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// errorBody decodes the router's error contract.
func errorBody(t *testing.T, resp *http.Response) (detail, code string) {
	t.Helper()
	var e struct{ Detail, Code string }
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("error body: %v", err)
	}
	return e.Detail, e.Code
}

func serverEnv(t *testing.T, limits Limits) (*env, *httptest.Server) {
	t.Helper()
	e := newEnv(t, limits, running("team-a", "a1"), running("team-a", "a2"), running("team-b", "b1"))
	e.auth.user("tok-alice", "alice", "team-a/")
	return e, serve(t, e)
}

func TestAuthRefusals(t *testing.T) {
	_, srv := serverEnv(t, Limits{})
	cases := []struct {
		auth, code string
	}{
		{"", "missing_credentials"},
		{"Basic YWxpY2U6cHc=", "missing_credentials"},
		{"Bearer", "missing_credentials"},
		{"Bearer a b", "missing_credentials"},
		{"Bearer nope", "invalid_credentials"},
		{"Bearer " + strings.Repeat("x", 100000), "invalid_credentials"},
	}
	for _, c := range cases {
		resp := post(t, srv, c.auth, "", initializeBody)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%.20q: status %d", c.auth, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("WWW-Authenticate"); got != wantChallenge {
			t.Errorf("%.20q: WWW-Authenticate %q", c.auth, got)
		}
		if _, code := errorBody(t, resp); code != c.code {
			t.Errorf("%.20q: code %q, want %q", c.auth, code, c.code)
		}
	}
	// Two credentials are none.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+Path, strings.NewReader(initializeBody))
	req.Header.Add("Authorization", "Bearer tok-alice")
	req.Header.Add("Authorization", "Bearer tok-bob")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("two credentials: %d", resp.StatusCode)
	}
	// The go-sdk client fails to connect without a valid token.
	if _, err := connect(t, srv, "nope", nil); err == nil {
		t.Error("connected with an invalid token")
	}
	// Elsewhere on the host: 404 with the error contract.
	resp, err = srv.Client().Get(srv.URL + "/other")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, code := errorBody(t, resp); resp.StatusCode != http.StatusNotFound || code != "not_found" {
		t.Errorf("/other: %d %q", resp.StatusCode, code)
	}
}

func TestProtectedResourceMetadata(t *testing.T) {
	e := newEnvWith(t, func(o *Options) {
		o.AuthorizationServers = []string{"https://issuer.example.com"}
		o.PublicURL.Path, o.PublicURL.RawQuery = "/ignored", "x=1"
	}, Limits{})
	srv := serve(t, e)
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Resource               string   `json:"resource"`
			BearerMethodsSupported []string `json:"bearer_methods_supported"`
			AuthorizationServers   []string `json:"authorization_servers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		if m.Resource != "https://mcp.example.com/mcp" || !slices.Equal(m.BearerMethodsSupported, []string{"header"}) ||
			!slices.Equal(m.AuthorizationServers, []string{"https://issuer.example.com"}) {
			t.Errorf("%s: %+v", path, m)
		}
	}
	// The challenge names the metadata of the public URL, whatever its
	// path.
	if resp := post(t, srv, "", "", initializeBody); resp.Header.Get("WWW-Authenticate") != wantChallenge {
		t.Errorf("challenge %q", resp.Header.Get("WWW-Authenticate"))
	}
}

var toolNames = []string{"list_sandboxes", "get_sandbox", "resume_sandbox", "suspend_sandbox", "execute_command", "read_file",
	"write_file", "list_files", "file_exists", "preview_url", "create_sandbox", "delete_sandbox"}

func TestListToolsAndCall(t *testing.T) {
	e, srv := serverEnv(t, Limits{})
	cs := mustConnect(t, srv, "tok-alice", nil)
	ctx := context.Background()
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		schema, _ := json.Marshal(tool.InputSchema)
		if !strings.Contains(string(schema), `"type":"object"`) || tool.Description == "" || tool.Annotations == nil || tool.Annotations.Title == "" {
			t.Errorf("%s: schema %s, annotations %+v", tool.Name, schema, tool.Annotations)
		}
	}
	// The go-sdk lists tools by name, whatever the table's order.
	if !slices.Equal(names, slices.Sorted(slices.Values(toolNames))) || len(e.h.tools) != 12 {
		t.Errorf("tools %v", names)
	}

	out, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "execute_command",
		Arguments: map[string]any{"namespace": "team-a", "name": "a1", "command": "echo hi"}})
	if err != nil || out.IsError || !strings.Contains(text(out), `"stdout": "ran: echo hi"`) {
		t.Fatalf("execute: %s, %v", text(out), err)
	}
	if reqs := e.runtime.requests(); len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer tok-alice" ||
		reqs[0].RemoteAddr == "" || !strings.HasPrefix(reqs[0].RemoteAddr, "127.0.0.1:") {
		t.Errorf("requests %+v", reqs)
	}
	// A refusal is a tool error the model reads, not a protocol error.
	out, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "get_sandbox", Arguments: map[string]any{"namespace": "team-b", "name": "b1"}})
	if err != nil || !out.IsError || text(out) != notVisible(resolver.Key{Namespace: "team-b", Name: "b1"}).Error() {
		t.Errorf("get invisible: %s, %v", text(out), err)
	}
	out, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "get_sandbox", Arguments: map[string]any{"namespace": "team-a", "name": "a1", "extra": 1}})
	if err != nil || !out.IsError || !strings.Contains(text(out), "unknown field") {
		t.Errorf("unknown field: %s, %v", text(out), err)
	}
}

func TestRateLimit(t *testing.T) {
	_, srv := serverEnv(t, Limits{CallsPerSecond: 0.001, CallBurst: 2}) // one more call in 1000 s
	cs := mustConnect(t, srv, "tok-alice", nil)
	call := func() *sdk.CallToolResult {
		out, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "get_sandbox", Arguments: map[string]any{"namespace": "team-a", "name": "a1"}})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for i := range 2 {
		if out := call(); out.IsError {
			t.Fatalf("call %d: %s", i, text(out))
		}
	}
	if out := call(); !out.IsError || !strings.HasPrefix(text(out), "rate limited") {
		t.Errorf("third call: %s", text(out))
	}
	// The limit is the identity's, across its sessions; another identity
	// has its own.
	cs2 := mustConnect(t, srv, "tok-alice", nil)
	if out, _ := cs2.CallTool(context.Background(), &sdk.CallToolParams{Name: "list_sandboxes"}); !out.IsError {
		t.Errorf("another session of alice: %s", text(out))
	}
	bob := mustConnect(t, srv, "tok-bob", nil)
	if out, _ := bob.CallTool(context.Background(), &sdk.CallToolParams{Name: "list_sandboxes"}); out.IsError {
		t.Errorf("bob: %s", text(out))
	}
}

func TestConcurrencyLimit(t *testing.T) {
	e, srv := serverEnv(t, Limits{ConcurrentCalls: 1})
	cs := mustConnect(t, srv, "tok-alice", nil)
	e.runtime.hold, e.runtime.arrived = make(chan struct{}), make(chan struct{}, 1)
	first := make(chan *sdk.CallToolResult, 1)
	go func() {
		out, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "execute_command",
			Arguments: map[string]any{"namespace": "team-a", "name": "a1", "command": "sleep 1"}})
		if err != nil {
			out = toolError(err.Error())
		}
		first <- out
	}()
	recv(t, "the first call to reach the sandbox", e.runtime.arrived)
	out, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "get_sandbox", Arguments: map[string]any{"namespace": "team-a", "name": "a1"}})
	if err != nil || !out.IsError || !strings.HasPrefix(text(out), "too many calls at once") {
		t.Errorf("second call: %s, %v", text(out), err)
	}
	close(e.runtime.hold)
	if out := recv(t, "the first call", first); out.IsError {
		t.Errorf("first call: %s", text(out))
	}
	// Its slot is free again.
	out, err = cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "get_sandbox", Arguments: map[string]any{"namespace": "team-a", "name": "a1"}})
	if err != nil || out.IsError {
		t.Errorf("after: %s, %v", text(out), err)
	}
}

// TestSessionsPerCaller: the bound on one identity's sessions. (Its
// clients connect at 2025-11-25, without the server/discover probe: see
// TestLastSessionOpens for the probe.)
func TestSessionsPerCaller(t *testing.T) {
	e, srv := serverEnv(t, Limits{SessionsPerCaller: 2})
	legacy := func(token string) (*sdk.ClientSession, error) { return connectAt(t, srv, token, nil, "2025-11-25") }
	s1, err := legacy("tok-alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := legacy("tok-alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := legacy("tok-alice"); err == nil {
		t.Error("a third session opened")
	}
	resp := post(t, srv, "Bearer tok-alice", "", initializeBody)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "10" {
		t.Fatalf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if detail, code := errorBody(t, resp); code != "too_many_sessions" || !strings.Contains(detail, "DELETE /mcp") {
		t.Errorf("%q %q", code, detail)
	}
	// Another identity is not counted against alice.
	if _, err := legacy("tok-bob"); err != nil {
		t.Fatal(err)
	}
	// A session closed frees its place.
	s1.Close()
	waitUntil(t, "alice's closed session to be gone", func() bool { return aliceSessions(e) < 2 })
	if _, err := legacy("tok-alice"); err != nil {
		t.Fatal(err)
	}
}

func aliceSessions(e *env) int {
	for _, c := range e.h.callerServers() {
		if c.resources.p.User == "alice" {
			return c.sessions()
		}
	}
	return 0
}

// TestLastSessionOpens: with one place left, the go-sdk client's default
// connect (a server/discover probe, then initialize) takes it, every
// time. The probe's own session, which the go-sdk makes for any POST
// without a session id and closes only after answering, must not count
// against the bound; else the initialize that follows races its close
// and gets 429.
func TestLastSessionOpens(t *testing.T) {
	e, srv := serverEnv(t, Limits{SessionsPerCaller: 2})
	mustConnect(t, srv, "tok-alice", nil)
	for i := range 50 {
		cs, err := connect(t, srv, "tok-alice", nil)
		if err != nil {
			t.Fatalf("connect %d, with a place left: %v", i, err)
		}
		cs.Close()
		waitUntil(t, "the closed session to be gone", func() bool { return aliceSessions(e) < 2 })
	}
}

// TestSessionBoundToIdentity: a session id presented by another identity
// is refused, whatever the method; another token of the same identity
// may use it.
func TestSessionBoundToIdentity(t *testing.T) {
	e, srv := serverEnv(t, Limits{})
	e.auth.user("tok-alice-2", "alice", "team-a/") // the same user and groups
	cs := mustConnect(t, srv, "tok-alice", nil)
	id := cs.ID()
	if id == "" {
		t.Fatal("no session id")
	}
	list := `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}`
	if resp := post(t, srv, "Bearer tok-bob", id, list); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob's POST on alice's session: %d", resp.StatusCode)
	}
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		req, _ := http.NewRequest(method, srv.URL+Path, nil)
		req.Header.Set("Authorization", "Bearer tok-bob")
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", id)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("bob's %s on alice's session: %d", method, resp.StatusCode)
		}
	}
	// A scoped token is an identity of its own, even for alice's sandbox.
	scoped := scopedToken(t, e.priv, resolver.Key{Namespace: "team-a", Name: "a1"}, "uid-team-a-a1")
	if resp := post(t, srv, "Bearer "+scoped, id, list); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a scoped token on alice's session: %d", resp.StatusCode)
	}
	resp := post(t, srv, "Bearer tok-alice-2", id, list)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "execute_command") {
		t.Errorf("alice's other token: %d %s", resp.StatusCode, body)
	}
	// The session survived the attempts.
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Errorf("alice's session after: %v", err)
	}
}

func TestCallersCap(t *testing.T) {
	_, srv := serverEnv(t, Limits{Callers: 1})
	mustConnect(t, srv, "tok-alice", nil)
	resp := post(t, srv, "Bearer tok-bob", "", initializeBody)
	if _, code := errorBody(t, resp); resp.StatusCode != http.StatusServiceUnavailable || code != "too_many_callers" || resp.Header.Get("Retry-After") != "30" {
		t.Errorf("bob: %d %q", resp.StatusCode, code)
	}
}

// run runs h.Run until the test ends, once it is subscribed to the feed.
func run(t *testing.T, e *env) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := recv(t, "Run to return", done); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitUntil(t, "Run to subscribe", func() bool { return e.sb.subscribers() == 1 })
}

func resourceURIs(t *testing.T, cs *sdk.ClientSession) []string {
	t.Helper()
	res, err := cs.ListResources(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, r := range res.Resources {
		uris = append(uris, r.URI)
	}
	slices.Sort(uris)
	return uris
}

// TestResources: the caller's sandboxes are its resources; they follow
// the resolver's feed, and a subscribed client hears of a state change.
func TestResources(t *testing.T) {
	e, srv := serverEnv(t, Limits{})
	run(t, e)
	updated := make(chan string, 16)
	listChanged := make(chan struct{}, 1)
	cs := mustConnect(t, srv, "tok-alice", &sdk.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, r *sdk.ResourceUpdatedNotificationRequest) { updated <- r.Params.URI },
		ResourceListChangedHandler: func(context.Context, *sdk.ResourceListChangedRequest) {
			select {
			case listChanged <- struct{}{}:
			default:
			}
		},
	})
	ctx := context.Background()
	want := []string{"sandbox://team-a/a1", "sandbox://team-a/a2"}
	waitUntil(t, "alice's resources", func() bool { return slices.Equal(resourceURIs(t, cs), want) })

	rr, err := cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: "sandbox://team-a/a1"})
	if err != nil || len(rr.Contents) != 1 || rr.Contents[0].MIMEType != "application/json" {
		t.Fatalf("read: %+v, %v", rr, err)
	}
	var info sandboxInfo
	if err := json.Unmarshal([]byte(rr.Contents[0].Text), &info); err != nil || info.State != "running" || info.URI != "sandbox://team-a/a1" {
		t.Errorf("read a1: %s", rr.Contents[0].Text)
	}
	for _, uri := range []string{"sandbox://team-b/b1", "sandbox://team-a/zz", "sandbox://team-a/a1/x", "file:///etc/passwd"} {
		if _, err := cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: uri}); err == nil {
			t.Errorf("read %s", uri)
		}
		if err := cs.Subscribe(ctx, &sdk.SubscribeParams{URI: uri}); err == nil {
			t.Errorf("subscribed to %s", uri)
		}
	}
	if err := cs.Subscribe(ctx, &sdk.SubscribeParams{URI: "sandbox://team-a/a1"}); err != nil {
		t.Fatal(err)
	}

	// a1 suspends: the subscriber hears of it, and reads the new state.
	e.sb.setState(resolver.Key{Namespace: "team-a", Name: "a1"}, resolver.StateSuspended)
	if uri := recv(t, "resources/updated", updated); uri != "sandbox://team-a/a1" {
		t.Errorf("updated %q", uri)
	}
	rr, err = cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: "sandbox://team-a/a1"})
	if err != nil || !strings.Contains(rr.Contents[0].Text, `"state":"suspended"`) {
		t.Errorf("read after: %+v, %v", rr, err)
	}
	// a2 is not subscribed: its change is not sent.
	e.sb.setState(resolver.Key{Namespace: "team-a", Name: "a2"}, resolver.StateStarting)
	// A new sandbox alice reaches appears; one that goes away disappears;
	// one elsewhere changes nothing.
	e.sb.set(running("team-a", "a3"))
	e.sb.set(running("team-b", "b2"))
	e.sb.remove(resolver.Key{Namespace: "team-a", Name: "a2"})
	want = []string{"sandbox://team-a/a1", "sandbox://team-a/a3"}
	waitUntil(t, "the new resource list", func() bool { return slices.Equal(resourceURIs(t, cs), want) })
	recv(t, "resources/list_changed", listChanged)
	// The next update is a1's again: none was sent for a2.
	e.sb.setState(resolver.Key{Namespace: "team-a", Name: "a1"}, resolver.StateRunning)
	if uri := recv(t, "resources/updated", updated); uri != "sandbox://team-a/a1" {
		t.Errorf("updated %q", uri)
	}
	// A warm-pool pod's UID key is nobody's resource.
	e.sb.mu.Lock()
	e.sb.warm = append(e.sb.warm, resolver.Result{State: resolver.StateRunning, Namespace: "team-a", Name: "pool-1", UID: "pod-1"})
	e.sb.mu.Unlock()
	e.sb.notify(resolver.Key{Namespace: "team-a", UID: "pod-1"})
	e.sb.set(running("team-a", "a4")) // a change after it, to know it was handled
	want = []string{"sandbox://team-a/a1", "sandbox://team-a/a3", "sandbox://team-a/a4"}
	waitUntil(t, "a4", func() bool { return slices.Equal(resourceURIs(t, cs), want) })
}

// TestScopedResources: a scoped token's server lists its one sandbox.
func TestScopedResources(t *testing.T) {
	e, srv := serverEnv(t, Limits{})
	cs := mustConnect(t, srv, scopedToken(t, e.priv, resolver.Key{Namespace: "team-a", Name: "a1"}, "uid-team-a-a1"), nil)
	waitUntil(t, "the scoped token's resources", func() bool { return slices.Equal(resourceURIs(t, cs), []string{"sandbox://team-a/a1"}) })
	out, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "list_sandboxes"})
	if err != nil || out.IsError || !strings.Contains(text(out), `"count": 1`) {
		t.Errorf("list: %s, %v", text(out), err)
	}
}

// TestIdleCallersDropped: a caller without sessions is forgotten after
// SessionIdle, and comes back as a new server on its next request.
func TestIdleCallersDropped(t *testing.T) {
	e, srv := serverEnv(t, Limits{RefreshEvery: 5_000_000, SessionIdle: 50_000_000}) // 5ms, 50ms
	run(t, e)
	cs := mustConnect(t, srv, "tok-alice", nil)
	cs.Close()
	waitUntil(t, "alice's server to be dropped", func() bool { return len(e.h.callerServers()) == 0 })
	cs = mustConnect(t, srv, "tok-alice", nil)
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

// TestSandboxCannotCrashTheEndpoint: a sandbox answers read_file's
// download with 204 (its runtime is the tenant's code); the caller gets a
// tool error, and the process lives on. The go-sdk recovers no panic of
// a tool handler, so this runs in a child process, whose death the
// parent reports.
func TestSandboxCannotCrashTheEndpoint(t *testing.T) {
	if os.Getenv("MCP_TEST_CHILD") == "crash" {
		e, srv := serverEnv(t, Limits{})
		e.runtime.answer = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }
		cs := mustConnect(t, srv, "tok-alice", nil)
		out, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "read_file",
			Arguments: map[string]any{"namespace": "team-a", "name": "a1", "path": "/etc/hostname"}})
		if err != nil || !out.IsError {
			t.Fatalf("read_file: %s, %v", text(out), err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSandboxCannotCrashTheEndpoint$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MCP_TEST_CHILD=crash")
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg, _, _ := strings.Cut(string(out), "\ngoroutine ")
		t.Fatalf("the endpoint's process died: %v\n%s", err, msg)
	}
}

// TestLimitedNeverPanics: the tool handler turns whatever a tool does, a
// nil result or a panic included, into a tool error, and frees the
// call's slot: the go-sdk would let a panic end the process.
func TestLimitedNeverPanics(t *testing.T) {
	e, _ := serverEnv(t, Limits{ConcurrentCalls: 1})
	c := e.caller(t, "tok-alice")
	cs, err := e.h.callerServerFor(c.principal)
	if err != nil {
		t.Fatal(err)
	}
	c.server = cs
	req := &sdk.CallToolRequest{Params: &sdk.CallToolParamsRaw{Name: "x", Arguments: json.RawMessage(`{}`)},
		Extra: &sdk.RequestExtra{TokenInfo: &auth.TokenInfo{UserID: cs.key, Extra: map[string]any{"caller": c}}}}
	runs := map[string]func(context.Context, *caller, json.RawMessage) (*sdk.CallToolResult, error){
		"nil result": func(context.Context, *caller, json.RawMessage) (*sdk.CallToolResult, error) { return nil, nil },
		"panics": func(context.Context, *caller, json.RawMessage) (*sdk.CallToolResult, error) {
			var m map[string]int
			m["x"]++
			return nil, nil
		},
	}
	for name, run := range runs {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: the tool handler panicked: %v", name, p)
				}
			}()
			res, err := e.h.limited(tool{def: &sdk.Tool{Name: "x"}, run: run})(context.Background(), req)
			if err != nil || res == nil || !res.IsError {
				t.Errorf("%s: %v, %v", name, res, err)
			}
		}()
		// The slot is free again.
		select {
		case cs.inflight <- struct{}{}:
			<-cs.inflight
		default:
			t.Errorf("%s: the call's slot was not freed", name)
		}
	}
}

// TestSessionsPerCallerRacing: connects racing for the last places open
// no more sessions than the bound, however they interleave.
func TestSessionsPerCallerRacing(t *testing.T) {
	e, srv := serverEnv(t, Limits{SessionsPerCaller: 2})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if cs, err := connect(t, srv, "tok-alice", nil); err == nil {
				t.Cleanup(func() { cs.Close() })
			}
		})
	}
	wg.Wait()
	if n := aliceSessions(e); n > 2 {
		t.Errorf("%d sessions open, the bound is 2", n)
	}
}
