package mcp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/access/scoped"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// The fakes of the package's dependencies: the resolver's view
// (fakeSandboxes, with its feed), the Kubernetes authority behind a real
// access.Checker (fakeAuthority), the caller's writes (fakeCluster), the
// preview minter (fakePreviews) and the router's data plane (fakeRuntime,
// a sandbox runtime API that records every request reaching it).

// fakeSandboxes is a resolver: sandboxes by name, plus Snapshot-only
// entries (unclaimed warm-pool pods), a feed, and Changed waiters.
type fakeSandboxes struct {
	mu      sync.Mutex
	byName  map[resolver.Key]resolver.Result // name keys (no UID)
	warm    []resolver.Result                // listed by Snapshot, found only by UID
	anyName bool                             // every valid name is a running sandbox (fuzzing)
	synced  bool
	waiters map[resolver.Key][]chan struct{}
	feeds   map[*fakeFeed]struct{}
}

func newFakeSandboxes(results ...resolver.Result) *fakeSandboxes {
	s := &fakeSandboxes{byName: make(map[resolver.Key]resolver.Result), synced: true,
		waiters: make(map[resolver.Key][]chan struct{}), feeds: make(map[*fakeFeed]struct{})}
	for _, r := range results {
		s.byName[nameKey(r)] = r
	}
	return s
}

func nameKey(r resolver.Result) resolver.Key {
	return resolver.Key{Namespace: r.Namespace, Name: r.Name}
}

// running is a running sandbox's result.
func running(ns, name string) resolver.Result {
	return resolver.Result{State: resolver.StateRunning, Namespace: ns, Name: name, UID: "uid-" + ns + "-" + name,
		PodIP: netip.MustParseAddr("10.0.0.7")}
}

func (s *fakeSandboxes) Lookup(k resolver.Key) resolver.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.UID != "" {
		for _, r := range s.warm {
			if r.UID == k.UID && r.Namespace == k.Namespace {
				return r
			}
		}
		for _, r := range s.byName {
			if r.UID == k.UID && r.Namespace == k.Namespace {
				return r
			}
		}
		return resolver.Result{}
	}
	if r, ok := s.byName[k]; ok {
		return r
	}
	if s.anyName && resolver.IsDNSLabel(k.Namespace) && resolver.IsDNSLabel(k.Name) {
		return running(k.Namespace, k.Name)
	}
	return resolver.Result{}
}

func (s *fakeSandboxes) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

func (s *fakeSandboxes) Snapshot() []resolver.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.byName))
	out = append(out, s.warm...)
	// The resolver promises no order.
	slices.SortFunc(out, func(a, b resolver.Result) int { return strings.Compare(b.Name, a.Name) })
	return out
}

func (s *fakeSandboxes) Subscribe() resolver.Feed {
	f := &fakeFeed{s: s, PendingKeys: resolver.NewPendingKeys()}
	s.mu.Lock()
	s.feeds[f] = struct{}{}
	s.mu.Unlock()
	return f
}

// subscribers is how many feeds are open (h.Run subscribes once).
func (s *fakeSandboxes) subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.feeds)
}

func (s *fakeSandboxes) Changed(k resolver.Key) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.waiters[k] = append(s.waiters[k], ch)
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.waiters[k] = slices.DeleteFunc(s.waiters[k], func(c chan struct{}) bool { return c == ch })
	}
}

// set adds or changes a sandbox, and tells the feeds and waiters.
func (s *fakeSandboxes) set(r resolver.Result) {
	s.mu.Lock()
	s.byName[nameKey(r)] = r
	s.mu.Unlock()
	s.notify(nameKey(r))
}

// remove deletes a sandbox, and tells the feeds and waiters.
func (s *fakeSandboxes) remove(k resolver.Key) {
	s.mu.Lock()
	delete(s.byName, k)
	s.mu.Unlock()
	s.notify(k)
}

// setState changes a known sandbox's state (or makes it, running).
func (s *fakeSandboxes) setState(k resolver.Key, st resolver.State) {
	s.mu.Lock()
	r, ok := s.byName[k]
	if !ok {
		r = running(k.Namespace, k.Name)
	}
	r.State = st
	s.byName[k] = r
	s.mu.Unlock()
	s.notify(k)
}

func (s *fakeSandboxes) notify(k resolver.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.waiters[k] {
		close(ch)
	}
	delete(s.waiters, k)
	for f := range s.feeds {
		f.Add(k)
	}
}

// fakeFeed is a coalescing resolver.Feed.
type fakeFeed struct {
	s *fakeSandboxes
	*resolver.PendingKeys
}

func (f *fakeFeed) Close() {
	f.s.mu.Lock()
	delete(f.s.feeds, f)
	f.s.mu.Unlock()
}

// fakeAuthority answers the Checker's TokenReviews and
// SubjectAccessReviews from tables: grants of a user are "ns/" (the whole
// namespace, a RoleBinding without resourceNames), "ns/name", or "*"
// (everything).
type fakeAuthority struct {
	mu     sync.Mutex
	tokens map[string]access.Identity
	grants map[string][]string
	down   bool
	sars   atomic.Int64
}

var errAuthorityDown = errors.New("connection refused")

func newFakeAuthority() *fakeAuthority {
	return &fakeAuthority{tokens: make(map[string]access.Identity), grants: make(map[string][]string)}
}

// user registers token as user's, with grants.
func (f *fakeAuthority) user(token, user string, grants ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[token] = access.Identity{User: user, Groups: []string{"system:authenticated"}}
	f.grants[user] = grants
}

func (f *fakeAuthority) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func (f *fakeAuthority) AuthenticateToken(ctx context.Context, token string) (access.Identity, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return access.Identity{}, false, errAuthorityDown
	}
	id, ok := f.tokens[token]
	return id, ok, nil
}

func (f *fakeAuthority) MayReach(ctx context.Context, id access.Identity, sb resolver.Key) (bool, error) {
	f.sars.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return false, errAuthorityDown
	}
	for _, g := range f.grants[id.User] {
		if g == "*" || g == sb.Namespace+"/" || (sb.Name != "" && g == sb.Namespace+"/"+sb.Name) {
			return true, nil
		}
	}
	return false, nil
}

// countingAccess is the real Checker, with its Reaches calls recorded.
type countingAccess struct {
	*access.Checker
	mu      sync.Mutex
	reached []resolver.Key
}

func (a *countingAccess) Reaches(ctx context.Context, p access.Principal, k resolver.Key) (bool, error) {
	a.mu.Lock()
	a.reached = append(a.reached, k)
	a.mu.Unlock()
	return a.Checker.Reaches(ctx, p, k)
}

func (a *countingAccess) reviews() []resolver.Key {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reached)
}

func (a *countingAccess) reset() {
	a.mu.Lock()
	a.reached = nil
	a.mu.Unlock()
}

// newChecker is a real access.Checker in modes kubernetes and
// scoped-token, on auth and a fresh v2 signing key, with its caches off
// (every Reaches asks auth), so that tests see grants change at once.
func newChecker(tb testing.TB, auth *fakeAuthority, sb access.Sandboxes) (*access.Checker, ed25519.PrivateKey) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k1.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	v, err := scoped.NewVerifier(scoped.VerifierOptions{PublicKeyDir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := access.New(access.Options{
		Modes:  []access.Mode{access.ModeKubernetes, access.ModeScopedToken},
		Tokens: auth, Access: auth, Scoped: v, Sandboxes: sb,
		TokenTTL: time.Nanosecond, TokenNegativeTTL: time.Nanosecond,
		DecisionTTL: time.Nanosecond, DecisionNegativeTTL: time.Nanosecond, StaleFor: time.Nanosecond,
		Metrics: access.NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c, priv
}

// scopedToken mints a v2 scoped token for the sandbox k (of uid).
func scopedToken(tb testing.TB, priv ed25519.PrivateKey, k resolver.Key, uid string) string {
	tb.Helper()
	now := time.Now()
	tok, err := scoped.MintV2(priv, scoped.Claims{KeyID: "k1", Namespace: k.Namespace, Name: k.Name, UID: uid,
		Expires: now.Add(time.Hour), Subject: "someone"}, now)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// clusterCall is one call of fakeCluster.
type clusterCall struct {
	op, token, namespace, name, template, selector string
	suspended                                      bool
	limit                                          int64
}

// fakeCluster records the caller's writes and applies them to sb (a
// suspend suspends, a resume runs, a claim makes a running sandbox, a
// delete removes it), as the controller and the resolver would.
type fakeCluster struct {
	sb    *fakeSandboxes
	mu    sync.Mutex
	calls []clusterCall
	err   error
	names []string
	// adopt: a claim (by name) whose controller adopts the warm sandbox
	// of the value's name instead of starting one of its own.
	adopt map[string]string
}

// claimed is the sandbox a claim gets: the adopted one, or its own name.
func (c *fakeCluster) claimed(claim string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sb, ok := c.adopt[claim]; ok {
		return sb
	}
	return claim
}

func (c *fakeCluster) ClaimedSandbox(ctx context.Context, token, namespace, claim string) (string, error) {
	return c.claimed(claim), nil
}

func (c *fakeCluster) record(cc clusterCall) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, cc)
	return c.err
}

func (c *fakeCluster) recorded() []clusterCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

func (c *fakeCluster) reset() {
	c.mu.Lock()
	c.calls = nil
	c.mu.Unlock()
}

func (c *fakeCluster) SetSuspended(ctx context.Context, token, namespace, name string, suspended bool) error {
	if err := c.record(clusterCall{op: "suspend", token: token, namespace: namespace, name: name, suspended: suspended}); err != nil {
		return err
	}
	if c.sb != nil {
		st := resolver.StateRunning
		if suspended {
			st = resolver.StateSuspended
		}
		c.sb.setState(resolver.Key{Namespace: namespace, Name: name}, st)
	}
	return nil
}

func (c *fakeCluster) CreateClaim(ctx context.Context, token, namespace, name, template string) error {
	if err := c.record(clusterCall{op: "create", token: token, namespace: namespace, name: name, template: template}); err != nil {
		return err
	}
	if c.sb != nil {
		c.sb.set(running(namespace, c.claimed(name)))
	}
	return nil
}

func (c *fakeCluster) Delete(ctx context.Context, token, namespace, name string) error {
	if err := c.record(clusterCall{op: "delete", token: token, namespace: namespace, name: name}); err != nil {
		return err
	}
	if c.sb != nil {
		c.sb.remove(resolver.Key{Namespace: namespace, Name: name})
	}
	return nil
}

func (c *fakeCluster) ListNames(ctx context.Context, token, namespace, labelSelector string, limit int64) ([]string, error) {
	if err := c.record(clusterCall{op: "list", token: token, namespace: namespace, selector: labelSelector, limit: limit}); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.names), nil
}

// fakePreviews mints links without signing anything.
type fakePreviews struct {
	mu   sync.Mutex
	reqs []access.MintRequest
	err  error
}

func (p *fakePreviews) Preview(ctx context.Context, pr access.Principal, req access.MintRequest, client netip.Addr, r *http.Request) (*access.MintResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs = append(p.reqs, req)
	if p.err != nil {
		return nil, p.err
	}
	return &access.MintResponse{Token: "sr2.preview", Expires: time.Unix(2_000_000_000, 0).UTC(),
		Links: []string{"https://8888-" + req.Name + "." + req.Namespace + ".sandboxes.example.com/?token=x"}}, nil
}

func (p *fakePreviews) recorded() []access.MintRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reqs)
}

// seenRequest is a request that reached the data plane: one that would
// have reached a sandbox.
type seenRequest struct {
	Method     string
	RequestURI string // as sent, escaped
	Path       string // decoded
	Host       string
	RemoteAddr string
	Header     http.Header
	Body       []byte
}

// fakeRuntime is the router's data plane with a sandbox runtime API
// behind it: it records every request and answers it like the runtime
// (POST /execute, POST /upload, GET /download|list|exists/<path>), unless
// answer is set. hold, when set, holds each request until closed, after
// telling arrived.
type fakeRuntime struct {
	mu      sync.Mutex
	seen    []seenRequest
	files   map[string][]byte // by decoded path
	answer  http.HandlerFunc
	hold    chan struct{}
	arrived chan struct{}
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{files: map[string][]byte{"/app/main.py": []byte("print('hello')\n")}}
}

func (f *fakeRuntime) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

func (f *fakeRuntime) reset() {
	f.mu.Lock()
	f.seen = nil
	f.mu.Unlock()
}

func (f *fakeRuntime) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil { // see TestDataPlaneBodyNeverNil
		body, _ = io.ReadAll(io.LimitReader(r.Body, 64<<20))
	}
	f.mu.Lock()
	f.seen = append(f.seen, seenRequest{Method: r.Method, RequestURI: r.RequestURI, Path: r.URL.Path, Host: r.Host,
		RemoteAddr: r.RemoteAddr, Header: r.Header.Clone(), Body: body})
	answer, hold, arrived := f.answer, f.hold, f.arrived
	f.mu.Unlock()
	if arrived != nil {
		arrived <- struct{}{}
	}
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if answer != nil {
		answer(w, r)
		return
	}
	op, rest, _ := strings.Cut(strings.TrimPrefix(r.RequestURI, "/"), "/")
	path, _ := url.PathUnescape(rest)
	switch {
	case r.Method == http.MethodPost && op == "execute":
		var in struct{ Command string }
		_ = json.Unmarshal(body, &in)
		writeJSON(w, http.StatusOK, map[string]any{"stdout": "ran: " + in.Command, "stderr": "", "exit_code": 0})
	case r.Method == http.MethodPost && op == "upload":
		writeJSON(w, http.StatusOK, map[string]any{"message": "ok"})
	case r.Method == http.MethodGet && op == "download":
		f.mu.Lock()
		data, ok := f.files[path]
		f.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "no such file: " + path})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(data)
	case r.Method == http.MethodGet && op == "list":
		writeJSON(w, http.StatusOK, []map[string]any{{"name": "main.py", "type": "file", "size": 15}})
	case r.Method == http.MethodGet && op == "exists":
		f.mu.Lock()
		_, ok := f.files[path]
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"exists": ok})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": "no route", "code": "not_found"})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// env is a Handler on fakes, and the fakes.
type env struct {
	h        *Handler
	sb       *fakeSandboxes
	auth     *fakeAuthority
	access   *countingAccess
	priv     ed25519.PrivateKey
	cluster  *fakeCluster
	previews *fakePreviews
	runtime  *fakeRuntime
}

// newEnv builds a Handler on fakes; sandboxes are the resolver's, and
// the users are alice (tok-alice) with alice's grants, bob (tok-bob)
// with none.
func newEnv(tb testing.TB, limits Limits, sandboxes ...resolver.Result) *env {
	tb.Helper()
	return newEnvWith(tb, nil, limits, sandboxes...)
}

// newEnvWith is newEnv with more Options, set by mod.
func newEnvWith(tb testing.TB, mod func(*Options), limits Limits, sandboxes ...resolver.Result) *env {
	tb.Helper()
	e := &env{sb: newFakeSandboxes(sandboxes...), auth: newFakeAuthority(), previews: &fakePreviews{}, runtime: newFakeRuntime()}
	e.cluster = &fakeCluster{sb: e.sb}
	c, priv := newChecker(tb, e.auth, e.sb)
	e.access, e.priv = &countingAccess{Checker: c}, priv
	e.auth.user("tok-bob", "bob")
	opts := Options{
		PublicURL: &url.URL{Scheme: "https", Host: "mcp.example.com"},
		Sandboxes: e.sb, Access: e.access, DataPlane: e.runtime, Cluster: e.cluster, Previews: e.previews,
		Limits: limits, Metrics: NewMetrics(prometheus.NewRegistry()),
	}
	if mod != nil {
		mod(&opts)
	}
	h, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	e.h = h
	return e
}

// caller authenticates token through the Checker, as a tool call's HTTP
// request would be, without making the caller's MCP server.
func (e *env) caller(tb testing.TB, token string) *caller {
	tb.Helper()
	client := netip.MustParseAddr("192.0.2.10")
	p, err := e.access.Authenticate(context.Background(), token, client)
	if err != nil {
		tb.Fatalf("authenticate %q: %v", token, err)
	}
	r := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/mcp", nil)
	r.RemoteAddr = "192.0.2.10:40000"
	return &caller{principal: p, token: token, client: client, request: r}
}

// call runs the tool name as c, with args as its raw arguments.
func (e *env) call(ctx context.Context, c *caller, name, args string) (*sdk.CallToolResult, error) {
	for _, t := range e.h.tools {
		if t.def.Name == name {
			return t.run(ctx, c, json.RawMessage(args))
		}
	}
	panic("no tool " + name)
}

// text is the text of a result's text contents.
func text(res *sdk.CallToolResult) string {
	if res == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range res.Content {
		if t, ok := c.(*sdk.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	return b.String()
}

// structured decodes a result's JSON text.
func structured(tb testing.TB, res *sdk.CallToolResult) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(text(res)), &m); err != nil {
		tb.Fatalf("result %q is not a JSON object: %v", text(res), err)
	}
	return m
}

// waitUntil waits for cond, checking it whenever tick fires, up to a
// deadline: for conditions with nothing to wait on (a list filled by
// another goroutine).
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv waits for a value of ch, up to a deadline.
func recv[T any](tb testing.TB, what string, ch <-chan T) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		tb.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
