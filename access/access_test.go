package access

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// fakeAuthority answers token and access reviews from tables, counting
// the calls; while down it answers neither. gate, when set, holds every
// call until closed.
type fakeAuthority struct {
	mu       sync.Mutex
	tokens   map[string]Identity // valid tokens
	grants   map[string][]string // user -> "ns/name" it may reach
	down     bool
	gate     chan struct{}
	tokenN   atomic.Int64
	decideN  atomic.Int64
	lastUser string
}

var errDown = errors.New("connection refused")

func (f *fakeAuthority) wait(ctx context.Context) error {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (f *fakeAuthority) AuthenticateToken(ctx context.Context, token string) (Identity, bool, error) {
	f.tokenN.Add(1)
	if err := f.wait(ctx); err != nil {
		return Identity{}, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return Identity{}, false, errDown
	}
	id, ok := f.tokens[token]
	return id, ok, nil
}

func (f *fakeAuthority) MayReach(ctx context.Context, id Identity, sb resolver.Key) (bool, error) {
	f.decideN.Add(1)
	if err := f.wait(ctx); err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return false, errDown
	}
	for _, g := range f.grants[id.User] {
		if g == sb.Namespace+"/"+sb.Name {
			return true, nil
		}
	}
	return false, nil
}

func (f *fakeAuthority) set(fn func()) {
	f.mu.Lock()
	fn()
	f.mu.Unlock()
}

// clock is a settable time source for the memos.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestChecker(t testing.TB, mode Mode, f *fakeAuthority) (*Checker, *clock, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(Options{Modes: []Mode{mode}, Tokens: f, Access: f, Metrics: NewMetrics(reg),
		TokenTTL: time.Minute, TokenNegativeTTL: 10 * time.Second, DecisionTTL: 30 * time.Second, DecisionNegativeTTL: 5 * time.Second,
		StaleFor: 10 * time.Minute, TokenCacheSize: 100, DecisionCacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Unix(1_000_000, 0)}
	c.tokenMemo.now = clk.Now
	c.decisions.now = clk.Now
	return c, clk, reg
}

func request(auth ...string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://router/", nil)
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return r
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return err.Error()
	}
	return "allowed"
}

var sbA = resolver.Key{Namespace: "team-a", Name: "sb1"}
var sbB = resolver.Key{Namespace: "team-b", Name: "sb1"}

func newAuthority() *fakeAuthority {
	return &fakeAuthority{
		tokens: map[string]Identity{
			"alice-token": {User: "alice", Groups: []string{"dev"}},
			"bob-token":   {User: "bob"},
		},
		grants: map[string][]string{"alice": {"team-a/sb1"}},
	}
}

func TestModes(t *testing.T) {
	cases := []struct {
		mode Mode
		auth []string
		sb   resolver.Key
		want string
	}{
		{ModeAllowAll, nil, sbA, "allowed"},
		{ModeAllowAll, []string{"Bearer junk"}, sbA, "allowed"},
		{ModeTokenReview, nil, sbA, CodeMissingCredentials},
		{ModeTokenReview, []string{"Bearer junk"}, sbA, CodeInvalidCredentials},
		{ModeTokenReview, []string{"Bearer bob-token"}, sbA, "allowed"},
		{ModeKubernetes, nil, sbA, CodeMissingCredentials},
		{ModeKubernetes, []string{"Basic YTpi"}, sbA, CodeInvalidCredentials},
		{ModeKubernetes, []string{"Bearer alice-token", "Bearer bob-token"}, sbA, CodeInvalidCredentials},
		{ModeKubernetes, []string{"Bearer"}, sbA, CodeInvalidCredentials},
		{ModeKubernetes, []string{"Bearer junk"}, sbA, CodeInvalidCredentials},
		{ModeKubernetes, []string{"Bearer alice-token"}, sbA, "allowed"},
		{ModeKubernetes, []string{"bearer  alice-token"}, sbA, "allowed"},
		{ModeKubernetes, []string{"Bearer alice-token"}, sbB, CodeForbidden},
		{ModeKubernetes, []string{"Bearer bob-token"}, sbA, CodeForbidden},
	}
	for _, tc := range cases {
		c, _, _ := newTestChecker(t, tc.mode, newAuthority())
		got := code(check(c, context.Background(), request(tc.auth...), tc.sb, 8888))
		if got != tc.want {
			t.Errorf("%s %q %v: %s, want %s", tc.mode, tc.auth, tc.sb, got, tc.want)
		}
	}
}

func TestErrorsCarryTheContract(t *testing.T) {
	c, _, _ := newTestChecker(t, ModeKubernetes, newAuthority())
	var e *Error
	if !errors.As(check(c, context.Background(), request(), sbA, 8888), &e) || e.Status != 401 || e.WWWAuthenticate() == "" {
		t.Fatalf("no credential: %+v, want 401 with a challenge", e)
	}
	if !errors.As(check(c, context.Background(), request("Bearer bob-token"), sbA, 8888), &e) || e.Status != 403 || e.WWWAuthenticate() != "" {
		t.Fatalf("forbidden: %+v, want 403 without a challenge", e)
	}
}

// TestCachesAndTTLs: one review per token and per (identity, sandbox)
// within their times to live, refusals for a shorter time, and a grant
// removed takes effect once the decision's time to live passed.
func TestCachesAndTTLs(t *testing.T) {
	f := newAuthority()
	c, clk, _ := newTestChecker(t, ModeKubernetes, f)
	check := func(tok string, sb resolver.Key) string {
		return code(check(c, context.Background(), request("Bearer "+tok), sb, 8888))
	}
	for range 5 {
		if got := check("alice-token", sbA); got != "allowed" {
			t.Fatal(got)
		}
	}
	if f.tokenN.Load() != 1 || f.decideN.Load() != 1 {
		t.Fatalf("reviews %d tokens, %d decisions for 5 requests; want 1 and 1", f.tokenN.Load(), f.decideN.Load())
	}
	// The grant goes away: the cached yes holds for its time to live.
	f.set(func() { f.grants["alice"] = nil })
	clk.advance(29 * time.Second)
	if got := check("alice-token", sbA); got != "allowed" {
		t.Fatalf("within the decision TTL: %s", got)
	}
	clk.advance(2 * time.Second)
	if got := check("alice-token", sbA); got != CodeForbidden {
		t.Fatalf("past the decision TTL: %s, want %s", got, CodeForbidden)
	}
	// A refusal is kept for the shorter negative TTL.
	f.set(func() { f.grants["alice"] = []string{"team-a/sb1"} })
	clk.advance(4 * time.Second)
	if got := check("alice-token", sbA); got != CodeForbidden {
		t.Fatalf("within the negative TTL: %s", got)
	}
	clk.advance(2 * time.Second)
	if got := check("alice-token", sbA); got != "allowed" {
		t.Fatalf("past the negative TTL: %s", got)
	}
	// An invalid token is asked about again only after its negative TTL.
	n := f.tokenN.Load()
	check("junk", sbA)
	check("junk", sbA)
	if f.tokenN.Load() != n+1 {
		t.Fatalf("an invalid token reviewed %d times, want once", f.tokenN.Load()-n)
	}
}

// TestOneReviewWhenRacing: requests racing for a token and a decision
// share one call each.
func TestOneReviewWhenRacing(t *testing.T) {
	f := newAuthority()
	gate := make(chan struct{})
	f.gate = gate
	c, _, _ := newTestChecker(t, ModeKubernetes, f)
	var wg sync.WaitGroup
	results := make(chan string, 50)
	for range 50 {
		wg.Go(func() {
			results <- code(check(c, context.Background(), request("Bearer alice-token"), sbA, 8888))
		})
	}
	// Wait until the first review is in flight, then let it through.
	for f.tokenN.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	close(results)
	for r := range results {
		if r != "allowed" {
			t.Fatal(r)
		}
	}
	if f.tokenN.Load() != 1 || f.decideN.Load() != 1 {
		t.Fatalf("50 racing requests made %d token and %d access reviews, want 1 and 1", f.tokenN.Load(), f.decideN.Load())
	}
}

// TestAPIServerDown: known answers keep serving past their time to live
// (for StaleFor), unknown ones get 503, never 401 or 403; all recovers.
func TestAPIServerDown(t *testing.T) {
	f := newAuthority()
	c, clk, _ := newTestChecker(t, ModeKubernetes, f)
	check := func(tok string, sb resolver.Key) string {
		return code(check(c, context.Background(), request("Bearer "+tok), sb, 8888))
	}
	if got := check("alice-token", sbA); got != "allowed" {
		t.Fatal(got)
	}
	if got := check("bob-token", sbA); got != CodeForbidden {
		t.Fatal(got)
	}
	f.set(func() { f.down = true })
	clk.advance(5 * time.Minute)
	if got := check("alice-token", sbA); got != "allowed" {
		t.Fatalf("cached while down: %s", got)
	}
	if got := check("bob-token", sbA); got != CodeForbidden {
		t.Fatalf("a cached refusal while down: %s", got)
	}
	for _, tc := range []struct {
		tok string
		sb  resolver.Key
	}{{"alice-token", sbB}, {"carol-token", sbA}} {
		if got := check(tc.tok, tc.sb); got != CodeUnavailable {
			t.Fatalf("uncached %s for %v while down: %s, want %s", tc.tok, tc.sb, got, CodeUnavailable)
		}
	}
	clk.advance(10 * time.Minute)
	if got := check("alice-token", sbA); got != CodeUnavailable {
		t.Fatalf("past StaleFor while down: %s, want %s", got, CodeUnavailable)
	}
	f.set(func() { f.down = false })
	if got := check("alice-token", sbA); got != "allowed" {
		t.Fatalf("after recovery: %s", got)
	}
}

// TestClientLeavesWhileReviewed: a client that leaves while its review is
// in flight gets its context's error, and the review still completes for
// the others.
func TestClientLeavesWhileReviewed(t *testing.T) {
	f := newAuthority()
	gate := make(chan struct{})
	f.gate = gate
	c, _, _ := newTestChecker(t, ModeKubernetes, f)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- check(c, ctx, request("Bearer alice-token"), sbA, 8888) }()
	for f.tokenN.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("departed client: %v", err)
	}
	close(gate)
	if got := code(check(c, context.Background(), request("Bearer alice-token"), sbA, 8888)); got != "allowed" {
		t.Fatal(got)
	}
}

func TestDecisionKey(t *testing.T) {
	base := Identity{User: "u", UID: "1", Groups: []string{"a", "b"}, Extra: map[string][]string{"k": {"v"}}}
	same := Identity{User: "u", UID: "1", Groups: []string{"b", "a"}, Extra: map[string][]string{"k": {"v"}}}
	others := []struct {
		id Identity
		sb resolver.Key
	}{
		{Identity{User: "u", UID: "1", Groups: []string{"a", "b"}, Extra: map[string][]string{"k": {"w"}}}, sbA},
		{Identity{User: "u", UID: "2", Groups: []string{"a", "b"}, Extra: map[string][]string{"k": {"v"}}}, sbA},
		{Identity{User: "u", UID: "1", Groups: []string{"ab"}, Extra: map[string][]string{"k": {"v"}}}, sbA},
		{Identity{User: "u1", Groups: []string{"a", "b"}, Extra: map[string][]string{"k": {"v"}}}, sbA},
		{base, sbB},
		{base, resolver.Key{Namespace: "team-as", Name: "b1"}},
	}
	key := func(id Identity, sb resolver.Key) digest {
		id.digest = identityDigest(id)
		return decisionKey(id, sb)
	}
	if key(base, sbA) != key(same, sbA) {
		t.Fatal("group order changed the key")
	}
	long := resolver.Key{Namespace: "ns", Name: string(make([]byte, 300))}
	longer := resolver.Key{Namespace: "ns", Name: string(make([]byte, 301))}
	if key(base, long) == key(base, longer) {
		t.Fatal("names past the stack buffer share a key")
	}
	for i, o := range others {
		if key(o.id, o.sb) == key(base, sbA) {
			t.Errorf("case %d: a different identity or sandbox got the same key", i)
		}
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer abc", "Bearer", "Bearer  a b", "Basic x", "", "Bearer \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tok, present := bearerToken(http.Header{"Authorization": {v}})
		if !present {
			t.Fatalf("%q: a header was present", v)
		}
		if tok != "" && (len(tok) > maxTokenBytes || containsSpace(tok)) {
			t.Fatalf("%q gave token %q", v, tok)
		}
	})
}

func containsSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			return true
		}
	}
	return false
}

// check is Check without its release, for tests of decisions only.
func check(c *Checker, ctx context.Context, r *http.Request, sb resolver.Key, port uint16) error {
	adm, err := c.Check(ctx, r, sb, port, "")
	if adm.Release != nil {
		adm.Release()
	}
	return err
}
