package access

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/access/scoped"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// newTestMinter is a Checker in the kubernetes and scoped-token modes
// (fakeAuthority: alice may reach team-a/sb1 and team-a/gone, which does
// not exist) and its Minter, the key "k1" among the verifier's.
func newTestMinter(t *testing.T, limits Limits) (*Minter, *Checker, *fakeAuthority) {
	t.Helper()
	priv, v := newTestVerifier(t)
	f := newAuthority()
	f.grants["alice"] = append(f.grants["alice"], "team-a/gone")
	c, err := New(Options{Modes: []Mode{ModeKubernetes, ModeScopedToken}, Tokens: f, Access: f, Scoped: v,
		Sandboxes: uids{sbA: "uid-a", sbB: "uid-b"}, Limits: limits, Metrics: NewMetrics(prometheus.NewRegistry()),
		Sessions: Sessions{Cookie: "sb-session"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMinter(c, MintOptions{Key: priv, KeyID: "k1", MaxTTL: time.Hour, BaseDomain: "sandbox.test", PathPrefix: "/sb"})
	if err != nil {
		t.Fatal(err)
	}
	return m, c, f
}

// mintCall posts body to m as bearer and returns the recorded answer.
func mintCall(m *Minter, method, bearer, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://router.example:8080"+MintPath, strings.NewReader(body))
	r.RemoteAddr = "192.0.2.9:4000"
	r.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	w := httptest.NewRecorder()
	m.ServeHTTP(w, r)
	return w
}

func answerCode(w *httptest.ResponseRecorder) string {
	var e struct{ Code string }
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	return e.Code
}

// TestMintedTokenWorks: a caller Kubernetes lets reach a sandbox gets a
// token bound to its UID, naming the caller, narrowed as asked, and entry
// links in both routing forms; the token opens that sandbox and no other.
func TestMintedTokenWorks(t *testing.T) {
	m, c, _ := newTestMinter(t, Limits{})
	w := mintCall(m, http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","ttl":"10m","ports":[3000],"methods":["GET"]}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("mint: %d %s", w.Code, w.Body)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q: the answer is a credential", cc)
	}
	var resp MintResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	claims, err := c.scoped.Verify(resp.Token)
	if err != nil {
		t.Fatal(err)
	}
	if claims.UID != "uid-a" || claims.Subject != "alice" || claims.KeyID != "k1" {
		t.Errorf("claims %+v: want bound to uid-a, subject alice, key k1", claims)
	}
	if life := time.Until(claims.Expires); life <= 9*time.Minute || life > 10*time.Minute+time.Second {
		t.Errorf("token lives %s, asked for 10m", life)
	}
	q := "/?" + DefaultEntryParam + "=" + resp.Token
	want := []string{"http://3000-sb1.team-a.sandbox.test:8080" + q, "http://router.example:8080/sb/team-a/sb1/3000" + q}
	if strings.Join(resp.Links, " ") != strings.Join(want, " ") {
		t.Errorf("links %q, want %q", resp.Links, want)
	}
	use := func(method string, sb resolver.Key, port uint16) string {
		r := httptest.NewRequest(method, "http://router/x", nil)
		r.RemoteAddr = "192.0.2.9:4000"
		r.Header.Set("Authorization", "Bearer "+resp.Token)
		return code(check(c, context.Background(), r, sb, port))
	}
	if got := use(http.MethodGet, sbA, 3000); got != "allowed" {
		t.Errorf("the minted token on its sandbox: %s", got)
	}
	for _, tc := range []struct {
		method string
		sb     resolver.Key
		port   uint16
	}{{http.MethodPost, sbA, 3000}, {http.MethodGet, sbA, 8888}, {http.MethodGet, sbB, 3000}} {
		if got := use(tc.method, tc.sb, tc.port); got != CodeForbidden {
			t.Errorf("%s %v:%d with the minted token: %s, want %s", tc.method, tc.sb, tc.port, got, CodeForbidden)
		}
	}
}

// TestMintRefuses: every way to ask wrongly gets its status and code,
// and existence is told only to a caller who may reach the sandbox.
func TestMintRefuses(t *testing.T) {
	m, _, f := newTestMinter(t, Limits{})
	minted := mintCall(m, http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1"}`)
	var resp MintResponse
	if err := json.Unmarshal(minted.Body.Bytes(), &resp); err != nil || resp.Token == "" {
		t.Fatalf("mint: %d %s", minted.Code, minted.Body)
	}
	ok := `{"namespace":"team-a","name":"sb1"}`
	cases := []struct {
		name, method, bearer, body string
		status                     int
		code                       string
	}{
		{"GET", http.MethodGet, "alice-token", "", 405, "method_not_allowed"},
		{"no credential", http.MethodPost, "", ok, 401, CodeMissingCredentials},
		{"unknown token", http.MethodPost, "nobody", ok, 401, CodeInvalidCredentials},
		{"a scoped token cannot mint", http.MethodPost, resp.Token, ok, 401, CodeInvalidCredentials},
		{"not granted", http.MethodPost, "bob-token", ok, 403, CodeForbidden},
		{"granted elsewhere only", http.MethodPost, "alice-token", `{"namespace":"team-b","name":"sb1"}`, 403, CodeForbidden},
		{"not granted, absent", http.MethodPost, "bob-token", `{"namespace":"team-a","name":"gone"}`, 403, CodeForbidden},
		{"granted, absent", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"gone"}`, 404, "sandbox_not_found"},
		{"not JSON", http.MethodPost, "alice-token", `namespace=team-a`, 400, "invalid_request"},
		{"unknown field", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","uid":"x"}`, 400, "invalid_request"},
		{"bad name", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"SB1"}`, 400, "invalid_request"},
		{"ttl too long", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","ttl":"2h"}`, 400, "invalid_request"},
		{"ttl negative", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","ttl":"-1m"}`, 400, "invalid_request"},
		{"ttl too short", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","ttl":"1s"}`, 400, "invalid_request"},
		{"port 0", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","ports":[0]}`, 400, "invalid_request"},
		{"lower-case method", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","methods":["get"]}`, 400, "invalid_request"},
		{"relative path", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","pathPrefix":"api"}`, 400, "invalid_request"},
		{"bad CIDR", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","clientCIDRs":["10.0.0.1"]}`, 400, "invalid_request"},
		{"too many ports", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","ports":[` + strings.Repeat("1,", maxMintList) + `1]}`, 400, "invalid_request"},
		{"trailing data", http.MethodPost, "alice-token", ok + `{"namespace":"team-a","name":"sb2"}`, 400, "invalid_request"},
		{"a method JSON escapes", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","methods":["GET\u0000<"]}`, 400, "invalid_request"},
		{"a long method", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","methods":["` + strings.Repeat("A", 3000) + `"]}`, 400, "invalid_request"},
		{"a path JSON escapes", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","pathPrefix":"/<script>"}`, 400, "invalid_request"},
		{"a mapped IPv4 range", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","clientCIDRs":["::ffff:10.0.0.0/104"]}`, 400, "invalid_request"},
		{"huge body", http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1","pathPrefix":"/` + strings.Repeat("a", maxMintRequest) + `"}`, 400, "invalid_request"},
	}
	r := httptest.NewRequest(http.MethodPost, "http://router"+MintPath, strings.NewReader(ok))
	r.Header.Set("Authorization", "Bearer alice-token")
	r.Header.Set("Content-Type", "text/plain") // what an HTML form can send cross-origin
	w := httptest.NewRecorder()
	m.ServeHTTP(w, r)
	if w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d %s, want 415", w.Code, w.Body)
	}
	for _, tc := range cases {
		w := mintCall(m, tc.method, tc.bearer, tc.body)
		if w.Code != tc.status || answerCode(w) != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, w.Code, answerCode(w), tc.status, tc.code)
		}
		if w.Code == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}
	f.set(func() { f.down = true })
	if w := mintCall(m, http.MethodPost, "carol-token", ok); w.Code != http.StatusServiceUnavailable {
		t.Errorf("API server down, uncached caller: %d %s, want 503", w.Code, w.Body)
	}
}

// TestMintLimits: refused credentials count against the client address
// as on the data plane, and a caller's mints against its rate.
func TestMintLimits(t *testing.T) {
	m, _, _ := newTestMinter(t, Limits{FailedAuthPerClient: 1e-6, FailedAuthPerClientBurst: 2,
		PerIdentity: 1e-6, PerIdentityBurst: 2, TableSize: 100})
	ok := `{"namespace":"team-a","name":"sb1"}`
	for i := range 2 {
		if w := mintCall(m, http.MethodPost, "alice-token", ok); w.Code != http.StatusCreated {
			t.Fatalf("mint %d: %d %s", i, w.Code, w.Body)
		}
	}
	if w := mintCall(m, http.MethodPost, "alice-token", ok); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("third mint in a burst of 2: %d %s", w.Code, w.Body)
	}
	for range 2 {
		mintCall(m, http.MethodPost, "wrong", ok)
	}
	if w := mintCall(m, http.MethodPost, "wrong", ok); answerCode(w) != "too_many_failed_credentials" {
		t.Errorf("after 2 refused credentials: %d %s", w.Code, w.Body)
	}
}

func TestNewMinterNeedsKubernetesAndAKey(t *testing.T) {
	f := newAuthority()
	c, _, _ := newTestChecker(t, ModeKubernetes, f)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := NewMinter(c, MintOptions{Key: priv, KeyID: "k1"}); err == nil {
		t.Error("a minter without scoped tokens (nothing would verify its tokens)")
	}
	m, _, _ := newTestMinter(t, Limits{})
	if _, err := NewMinter(m.c, MintOptions{KeyID: "k1"}); err == nil {
		t.Error("a minter without a key")
	}
}

// FuzzMintRequest: any body either fails cleanly or yields claims that
// mint a token which verifies, fits in a session cookie, and is for the
// sandbox asked for, for no longer than the maximum.
func FuzzMintRequest(f *testing.F) {
	for _, s := range []string{`{"namespace":"team-a","name":"sb1"}`, `{"namespace":"a","name":"b","ttl":"1h","ports":[1,65535],"methods":["GET"],"pathPrefix":"/x","clientCIDRs":["::/0"]}`,
		`{"namespace":"a","name":"b","ttl":"1ns"}`, `{}`, `[]`, `{"namespace":"a","name":"b","pathPrefix":"/\u0000"}`} {
		f.Add(s)
	}
	priv, v := newTestVerifier(f)
	m := &Minter{opts: MintOptions{Key: priv, KeyID: "k1", DefaultTTL: 15 * time.Minute, MaxTTL: time.Hour}, now: time.Now, c: &Checker{}}
	f.Fuzz(func(t *testing.T, body string) {
		req, claims, err := m.parse(strings.NewReader(body))
		if err != nil {
			return
		}
		now := m.now()
		claims.KeyID, claims.UID, claims.Subject = "k1", "0b5c7c0e-7a5a-4c42-9d0e-3c1a2b3c4d5e", "system:serviceaccount:agents:platform"
		tok, err := scoped.MintV2(priv, claims, now)
		if err != nil {
			t.Fatalf("%q: accepted, yet %v", body, err)
		}
		if !cookieSafe(tok) {
			t.Fatalf("%q: a token of %d bytes no cookie can carry", body, len(tok))
		}
		got, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("%q: minted token does not verify: %v", body, err)
		}
		if got.Namespace != req.Namespace || got.Name != req.Name || got.Expires.After(now.Add(time.Hour)) {
			t.Fatalf("%q: claims %+v", body, got)
		}
	})
}

// TestMintLinks: entry links follow the token (its port and path prefix),
// are left out when no browser could open them, and are never built from
// a Host a client wrote oddly; a public URL, when set, is where they go.
func TestMintLinks(t *testing.T) {
	m, c, _ := newTestMinter(t, Limits{})
	links := func(host, body string) []string {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, "http://router"+MintPath, strings.NewReader(body))
		r.Host = host
		r.Header.Set("Authorization", "Bearer alice-token")
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		m.ServeHTTP(w, r)
		var resp MintResponse
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || w.Code != http.StatusCreated {
			t.Fatalf("%s %s: %d %s", host, body, w.Code, w.Body)
		}
		if !resp.Expires.Equal(resp.Expires.Truncate(time.Second)) {
			t.Errorf("expires %v: not whole seconds as in the token", resp.Expires)
		}
		for i, l := range resp.Links {
			resp.Links[i] = strings.Split(l, "?")[0]
		}
		return resp.Links
	}
	same := func(got []string, want ...string) bool { return strings.Join(got, " ") == strings.Join(want, " ") }
	if got := links("router.example", `{"namespace":"team-a","name":"sb1","ports":[3000],"pathPrefix":"/app"}`); !same(got,
		"http://3000-sb1.team-a.sandbox.test/app", "http://router.example/sb/team-a/sb1/3000/app") {
		t.Errorf("at the token's port and path: %q", got)
	}
	if got := links("[::1]:8080", `{"namespace":"team-a","name":"sb1"}`); !same(got,
		"http://8888-sb1.team-a.sandbox.test:8080/", "http://[::1]:8080/sb/team-a/sb1/8888/") {
		t.Errorf("an IPv6 router address: %q", got)
	}
	if got := links("router.example", `{"namespace":"team-a","name":"sb1","methods":["POST"]}`); got != nil {
		t.Errorf("a token without GET cannot open a session: %q", got)
	}
	for _, host := range []string{"a:b.evil.example", "a:1:2", "evil.example:08080", "under_score.example"} {
		if got := links(host, `{"namespace":"team-a","name":"sb1"}`); got != nil {
			t.Errorf("Host %q: links %q, want none", host, got)
		}
	}
	m.opts.PublicURL = &url.URL{Scheme: "https", Host: "sandboxes.example.com"}
	if got := links("sandbox-router.infra.svc:8080", `{"namespace":"team-a","name":"sb1"}`); !same(got,
		"https://8888-sb1.team-a.sandbox.test/", "https://sandboxes.example.com/sb/team-a/sb1/8888/") {
		t.Errorf("with a public URL, called in-cluster: %q", got)
	}
	c.sessions.Cookie = ""
	if got := links("router.example", `{"namespace":"team-a","name":"sb1"}`); got != nil {
		t.Errorf("sessions off: links %q", got)
	}
}

// notSynced is a resolver that has not loaded the cluster yet.
type notSynced struct{ uids }

func (notSynced) Synced() bool { return false }

// TestMintBeforeTheResolverSynced: an allowed caller gets 503, not a 404
// for a sandbox the router has not seen yet.
func TestMintBeforeTheResolverSynced(t *testing.T) {
	m, c, _ := newTestMinter(t, Limits{})
	c.sandboxes = notSynced{uids{sbA: "uid-a"}}
	w := mintCall(m, http.MethodPost, "alice-token", `{"namespace":"team-a","name":"sb1"}`)
	if w.Code != http.StatusServiceUnavailable || answerCode(w) != "router_not_ready" || w.Header().Get("Retry-After") == "" {
		t.Errorf("before the sync: %d %s", w.Code, w.Body)
	}
}
