package router

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// refusal is an access refusal as access.Error carries it.
type refusal struct {
	status    int
	code      string
	challenge string
}

func (r *refusal) Error() string           { return "refused" }
func (r *refusal) HTTPStatus() int         { return r.status }
func (r *refusal) ErrorCode() string       { return r.code }
func (r *refusal) WWWAuthenticate() string { return r.challenge }

// headerAccess admits requests whose X-Test-Token is "let-me-in" for
// sandbox sb1 only; no token is a 401, another sandbox a 403.
type headerAccess struct{ checks, open atomic.Int64 }

func (a *headerAccess) Check(ctx context.Context, r *http.Request, sb resolver.Key, port uint16, sessionPath string) (access.Admission, error) {
	a.checks.Add(1)
	switch {
	case r.Header.Get("X-Test-Token") == "":
		return access.Admission{}, &refusal{http.StatusUnauthorized, "missing_credentials", `Bearer realm="test"`}
	case r.Header.Get("X-Test-Token") != "let-me-in" || sb.Name != "sb1":
		return access.Admission{}, &refusal{http.StatusForbidden, "sandbox_forbidden", ""}
	}
	a.open.Add(1)
	return access.Admission{Release: func() { a.open.Add(-1) }}, nil
}

// TestAccessBeforeLookup: the access check runs before the sandbox is
// looked up, so a refused caller learns nothing (an unknown sandbox is a
// 403 too, not a 404), and its answer carries the challenge.
func TestAccessBeforeLookup(t *testing.T) {
	acc := &headerAccess{}
	env := newProxyEnv(t, func(o *Options) { o.Access = acc })
	be, seen := startRecorder(t, false)
	client := env.client(viaH1)
	send := func(name, token string) response {
		req := env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", be.port, nil)
		req.Header.Set(HeaderSandboxID, name)
		if token != "" {
			req.Header.Set("X-Test-Token", token)
		}
		return doRequest(client, req)
	}
	lookups := func() int {
		env.res.mu.Lock()
		defer env.res.mu.Unlock()
		return len(env.res.lookups)
	}
	r := send("sb1", "")
	if r.status != 401 || !strings.Contains(r.body, "missing_credentials") || r.header.Get("WWW-Authenticate") != `Bearer realm="test"` {
		t.Fatalf("no token: %d %q %v", r.status, r.body, r.header)
	}
	for _, name := range []string{"sb1", "no-such-sandbox"} {
		token := "wrong"
		if name != "sb1" {
			token = "let-me-in"
		}
		if r := send(name, token); r.status != 403 || !strings.Contains(r.body, "sandbox_forbidden") || r.header.Get("WWW-Authenticate") != "" {
			t.Fatalf("%s with %s: %d %q", name, token, r.status, r.body)
		}
	}
	if n := lookups(); n != 0 {
		t.Fatalf("%d lookups for refused requests, want none", n)
	}
	if len(seen) != 0 {
		t.Fatal("a refused request reached the sandbox")
	}
	if r := send("sb1", "let-me-in"); r.status != 200 {
		t.Fatalf("admitted: %d %q", r.status, r.body)
	}
	waitUntil(t, "the admitted request's release", func() bool { return acc.open.Load() == 0 })
	// /healthz without a key answers without a check, as before.
	resp, err := client.Get(env.url(viaH1, "", "/healthz"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := acc.checks.Load(); got != 4 {
		t.Errorf("%d checks, want 4", got)
	}
	if got := env.metric("sandbox_router_requests_total", map[string]string{"code": "403"}); got != 2 {
		t.Errorf("403s counted %v", got)
	}
}

// TestSessionCredentialsNeverReachTheSandbox: the session cookie (both
// names) is taken out of the Cookie header and the entry parameter out of
// the query; everything else arrives as sent. A sandbox's Set-Cookie for
// the parent domain becomes host-only under host routing.
func TestSessionCredentialsNeverReachTheSandbox(t *testing.T) {
	env := newProxyEnv(t, func(o *Options) {
		o.Access = allowAccess{}
		o.SessionCookie = "sandbox-session"
		o.EntryParam = "sandbox_token"
	})
	seen := make(chan seenRequest, 4)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- seenRequest{RequestURI: r.RequestURI, Header: r.Header.Clone()}
		http.SetCookie(w, &http.Cookie{Name: "app", Value: "1", Domain: testBaseDomain, Path: "/"})
		w.Header().Add("Set-Cookie", "other=2; domain=.default."+testBaseDomain+"; HttpOnly")
		io.WriteString(w, "ok")
	}), false)
	host := strconv.Itoa(be.port) + "-sb1.default." + testBaseDomain
	req, _ := http.NewRequest(http.MethodGet, "http://"+env.httpAddr+"/p%2Fq?x=1&sandbox_token=SECRET&y=%2F", nil)
	req.Host = host
	req.Header.Set("Cookie", "a=1; sandbox-session=SECRET; __Host-sandbox-session=S2; b=2")
	r := doRequest(env.client(viaH1), req)
	if r.status != 200 {
		t.Fatalf("%d %q", r.status, r.body)
	}
	got := recv(t, seen, "the request at the sandbox")
	if got.RequestURI != "/p%2Fq?x=1&y=%2F" {
		t.Errorf("the sandbox got %q: the entry parameter must go, the rest stay byte for byte", got.RequestURI)
	}
	if c := got.Header.Get("Cookie"); c != "a=1; b=2" {
		t.Errorf("the sandbox got Cookie %q", c)
	}
	for _, sc := range r.header.Values("Set-Cookie") {
		if strings.Contains(strings.ToLower(sc), "domain") {
			t.Errorf("Set-Cookie %q reached the client with a Domain", sc)
		}
	}
	if n := len(r.header.Values("Set-Cookie")); n != 2 {
		t.Errorf("%d Set-Cookie, want both kept", n)
	}
}

// allowAccess admits everything.
type allowAccess struct{}

func (allowAccess) Check(context.Context, *http.Request, resolver.Key, uint16, string) (access.Admission, error) {
	return access.Admission{Release: func() {}}, nil
}

// sessionStart is the 302 an entry link gets.
type sessionStart struct{}

func (sessionStart) Error() string     { return "session started" }
func (sessionStart) HTTPStatus() int   { return http.StatusFound }
func (sessionStart) ErrorCode() string { return "session_started" }
func (sessionStart) ResponseHeaders() http.Header {
	return http.Header{"Location": {"/lab"}, "Set-Cookie": {"sandbox-session=tok; Path=/; HttpOnly"}}
}

func TestAccessResponseHeaders(t *testing.T) {
	env := newProxyEnv(t, func(o *Options) { o.Access = startAccess{} })
	req := env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/lab?sandbox_token=tok", 8888, nil)
	client := env.client(viaH1)
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r := doRequest(client, req)
	if r.status != http.StatusFound || r.header.Get("Location") != "/lab" || r.header.Get("Set-Cookie") == "" {
		t.Fatalf("%d %v", r.status, r.header)
	}
}

type startAccess struct{}

func (startAccess) Check(context.Context, *http.Request, resolver.Key, uint16, string) (access.Admission, error) {
	return access.Admission{}, sessionStart{}
}

// tokenUsers is a token authenticator that knows one token per user.
type tokenUsers map[string]string

func (u tokenUsers) AuthenticateToken(_ context.Context, token string) (access.Identity, bool, error) {
	user, ok := u[token]
	return access.Identity{User: user}, ok, nil
}

// TestBrowserSessionThroughTheRouter walks a browser's way with a real
// access.Checker: the entry link answers 302 with a host-only cookie, the
// browser follows it and carries the cookie, the sandbox sees neither the
// token nor the cookie, a cross-site POST is refused, and the cookie opens
// neither another sandbox port nor the router's shared host.
func TestBrowserSessionThroughTheRouter(t *testing.T) {
	checker, err := access.New(access.Options{
		Modes:    []access.Mode{access.ModeTokenReview},
		Tokens:   tokenUsers{"alice-token": "alice"},
		Metrics:  access.NewMetrics(prometheus.NewRegistry()),
		Sessions: access.Sessions{Cookie: "sandbox-session"},
	})
	if err != nil {
		t.Fatal(err)
	}
	env := newProxyEnv(t, func(o *Options) {
		o.Access = checker
		o.SessionCookie = "sandbox-session"
		o.EntryParam = access.DefaultEntryParam
	})
	seen := make(chan seenRequest, 8)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- seenRequest{RequestURI: r.RequestURI, Header: r.Header.Clone()}
		io.WriteString(w, "ok")
	})
	be, other := startBackend(t, handler, false), startBackend(t, handler, false)
	origin := "https://" + strconv.Itoa(be.port) + "-sb1.default." + testBaseDomain

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := env.client(viaH2)
	browser.Jar = jar

	r := doRequest(browser, mustRequest(t, http.MethodGet, origin+"/lab?x=1&sandbox_token=alice-token", nil))
	if r.status != http.StatusOK {
		t.Fatalf("entry link: %d %q", r.status, r.body)
	}
	got := recv(t, seen, "the entry link's request at the sandbox")
	if got.RequestURI != "/lab?x=1" || got.Header.Get("Cookie") != "" || got.Header.Get("Authorization") != "" {
		t.Fatalf("the sandbox got %q with Cookie %q: no credential may reach it", got.RequestURI, got.Header.Get("Cookie"))
	}
	u, _ := url.Parse(origin)
	if cks := jar.Cookies(u); len(cks) != 1 || cks[0].Name != "__Host-sandbox-session" {
		t.Fatalf("the browser holds %v, want the __Host- session cookie", cks)
	}

	// Later requests carry the cookie; a same-origin POST passes, a
	// cross-site one does not.
	post := func(from string) response {
		req := mustRequest(t, http.MethodPost, origin+"/api", strings.NewReader("{}"))
		req.Header.Set("Origin", from)
		return doRequest(browser, req)
	}
	if r := post(origin); r.status != http.StatusOK {
		t.Fatalf("same-origin POST: %d %q", r.status, r.body)
	}
	if got := recv(t, seen, "the POST at the sandbox"); got.Header.Get("Cookie") != "" {
		t.Fatalf("the sandbox got Cookie %q", got.Header.Get("Cookie"))
	}
	if r := post("https://evil.example"); r.status != http.StatusForbidden || !strings.Contains(r.body, "cross_origin_refused") {
		t.Fatalf("cross-site POST: %d %q, want 403 cross_origin_refused", r.status, r.body)
	}

	// Another port of the sandbox is another origin: no cookie, 401.
	otherOrigin := "https://" + strconv.Itoa(other.port) + "-sb1.default." + testBaseDomain
	if r := doRequest(browser, mustRequest(t, http.MethodGet, otherOrigin+"/", nil)); r.status != http.StatusUnauthorized {
		t.Fatalf("another port with the jar: %d %q, want 401", r.status, r.body)
	}
	// On the shared host a session cookie is no credential.
	req := env.sandboxRequest(context.Background(), viaH2, http.MethodGet, "/", be.port, nil)
	req.Header.Set("Cookie", "__Host-sandbox-session=alice-token")
	if r := doRequest(env.client(viaH2), req); r.status != http.StatusUnauthorized {
		t.Fatalf("the cookie on the shared host: %d %q, want 401", r.status, r.body)
	}
	if len(seen) != 0 {
		t.Fatalf("a refused request reached the sandbox")
	}
}

func mustRequest(t *testing.T, method, target string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestIdentityHeaders: with IdentityHeaders the sandbox learns who called
// from the router alone: a client's own X-Sandbox-Caller-* headers never
// pass, with the option on or off.
func TestIdentityHeaders(t *testing.T) {
	for _, on := range []bool{true, false} {
		checker, err := access.New(access.Options{
			Modes:   []access.Mode{access.ModeTokenReview},
			Tokens:  groupUsers{"alice-token": {User: "alice", Groups: []string{"dev", "a,b", "system:authenticated"}}},
			Metrics: access.NewMetrics(prometheus.NewRegistry()),
		})
		if err != nil {
			t.Fatal(err)
		}
		env := newProxyEnv(t, func(o *Options) { o.Access, o.IdentityHeaders = checker, on })
		seen := make(chan seenRequest, 1)
		be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen <- seenRequest{Header: r.Header.Clone()}
		}), false)
		for _, proto := range []string{viaH1, viaH2C} {
			req := env.sandboxRequest(context.Background(), proto, http.MethodGet, "/", be.port, nil)
			req.Header.Set("Authorization", "Bearer alice-token")
			req.Header.Set(HeaderCallerUser, "root")
			req.Header.Set(HeaderCallerGroups, "system:masters")
			if r := doRequest(env.client(proto), req); r.status != http.StatusOK {
				t.Fatalf("%d %q", r.status, r.body)
			}
			h := recv(t, seen, "the request at the sandbox").Header
			want := map[string]string{HeaderCallerUser: "", HeaderCallerGroups: "", HeaderCallerAuth: ""}
			if on {
				want = map[string]string{HeaderCallerUser: "alice", HeaderCallerGroups: "dev,system:authenticated", HeaderCallerAuth: access.AuthKubernetesToken}
			}
			for k, v := range want {
				if got := h.Values(k); strings.Join(got, "|") != v {
					t.Errorf("on=%v %s: %s = %q, want %q", on, proto, k, got, v)
				}
			}
		}
	}
}

// groupUsers is a token authenticator with whole identities.
type groupUsers map[string]access.Identity

func (u groupUsers) AuthenticateToken(_ context.Context, token string) (access.Identity, bool, error) {
	id, ok := u[token]
	return id, ok, nil
}

// TestMintEndpointOnTheRoutersOwnHost: Options.Mint answers its path on a
// request that names no sandbox, its status counted; the same path with a
// sandbox named is the sandbox's.
func TestMintEndpointOnTheRoutersOwnHost(t *testing.T) {
	var minted atomic.Int64
	mint := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		minted.Add(1)
		w.WriteHeader(http.StatusCreated)
	})
	env := newProxyEnv(t, func(o *Options) { o.Mint = mint })
	be, seen := startRecorder(t, false)
	client := env.client(viaH1)
	resp, err := client.Post(env.url(viaH1, "", access.MintPath), "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || minted.Load() != 1 {
		t.Fatalf("mint path on the router's host: %d, %d mints", resp.StatusCode, minted.Load())
	}
	if got := env.metric("sandbox_router_requests_total", map[string]string{"code": "201"}); got != 1 {
		t.Errorf("201s counted %v", got)
	}
	r := doRequest(client, env.sandboxRequest(context.Background(), viaH1, http.MethodPost, access.MintPath, be.port, nil))
	if r.status != 200 || minted.Load() != 1 {
		t.Fatalf("mint path with a sandbox named: %d %q, %d mints", r.status, r.body, minted.Load())
	}
	if got := recv(t, seen, "the sandbox's own path"); got.RequestURI != access.MintPath {
		t.Fatalf("backend got %q", got.RequestURI)
	}
}
