package access

import (
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func newLimitedChecker(t *testing.T, mode Mode, f *fakeAuthority, l Limits) *Checker {
	t.Helper()
	c, err := New(Options{Modes: []Mode{mode}, Tokens: f, Access: f, Metrics: NewMetrics(prometheus.NewRegistry()), Limits: l})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func from(addr string, auth ...string) *http.Request {
	r := request(auth...)
	r.RemoteAddr = addr
	return r
}

// slow is a rate so low that no token comes back during a test.
const slow = rate.Limit(1e-6)

func TestLimitPerIdentity(t *testing.T) {
	f := newAuthority()
	f.grants["bob"] = []string{"team-a/sb1"}
	c := newLimitedChecker(t, ModeKubernetes, f, Limits{PerIdentity: slow, PerIdentityBurst: 2})
	for i := range 2 {
		if got := code(check(c, context.Background(), from("192.0.2.1:1", "Bearer alice-token"), sbA, 8888)); got != "allowed" {
			t.Fatalf("request %d: %s", i, got)
		}
	}
	err := check(c, context.Background(), from("192.0.2.1:1", "Bearer alice-token"), sbA, 8888)
	if e, ok := err.(*Error); !ok || e.Status != 429 || e.Code != CodeRateLimited || e.RetryAfter < 1 {
		t.Fatalf("past the burst: %v", err)
	}
	// Another identity, from the same address, is its own bucket.
	if got := code(check(c, context.Background(), from("192.0.2.1:1", "Bearer bob-token"), sbA, 8888)); got != "allowed" {
		t.Fatalf("bob: %s", got)
	}
}

func TestLimitAnonymousByAddress(t *testing.T) {
	c := newLimitedChecker(t, ModeAllowAll, newAuthority(), Limits{PerIdentity: slow, PerIdentityBurst: 1})
	if !c.Enforcing() {
		t.Fatal("allow-all with limits must be enforced")
	}
	if got := code(check(c, context.Background(), from("192.0.2.1:1"), sbA, 8888)); got != "allowed" {
		t.Fatal(got)
	}
	if got := code(check(c, context.Background(), from("192.0.2.1:2"), sbA, 8888)); got != CodeRateLimited {
		t.Fatalf("same address, another port: %s", got)
	}
	if got := code(check(c, context.Background(), from("192.0.2.2:1"), sbA, 8888)); got != "allowed" {
		t.Fatalf("another address: %s", got)
	}
	if plain := newLimitedChecker(t, ModeAllowAll, newAuthority(), Limits{}); plain.Enforcing() {
		t.Fatal("allow-all without limits has nothing to enforce")
	}
}

func TestLimitPerSandbox(t *testing.T) {
	f := newAuthority()
	f.grants["bob"] = []string{"team-a/sb1"}
	c := newLimitedChecker(t, ModeKubernetes, f, Limits{PerSandbox: slow, PerSandboxBurst: 2})
	check(c, context.Background(), from("192.0.2.1:1", "Bearer alice-token"), sbA, 8888)
	check(c, context.Background(), from("192.0.2.2:1", "Bearer bob-token"), sbA, 8888)
	if got := code(check(c, context.Background(), from("192.0.2.3:1", "Bearer alice-token"), sbA, 8888)); got != CodeRateLimited {
		t.Fatalf("a third request to the sandbox: %s", got)
	}
	f.grants["alice"] = append(f.grants["alice"], "team-b/sb1")
	if got := code(check(c, context.Background(), from("192.0.2.3:1", "Bearer alice-token"), sbB, 8888)); got != "allowed" {
		t.Fatalf("another sandbox: %s", got)
	}
}

func TestLimitConcurrentPerSandbox(t *testing.T) {
	c := newLimitedChecker(t, ModeAllowAll, newAuthority(), Limits{ConcurrentPerSandbox: 2})
	var releases []func()
	for range 2 {
		adm, err := c.Check(context.Background(), from("192.0.2.1:1"), sbA, 8888, "")
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, adm.Release)
	}
	if _, err := c.Check(context.Background(), from("192.0.2.1:1"), sbA, 8888, ""); code(err) != CodeSandboxBusy {
		t.Fatalf("a third at once: %v", err)
	}
	if _, err := c.Check(context.Background(), from("192.0.2.1:1"), sbB, 8888, ""); err != nil {
		t.Fatalf("another sandbox: %v", err)
	}
	releases[0]()
	releases[0]() // twice is once
	adm, err := c.Check(context.Background(), from("192.0.2.1:1"), sbA, 8888, "")
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := c.Check(context.Background(), from("192.0.2.1:1"), sbA, 8888, ""); code(err) != CodeSandboxBusy {
		t.Fatal("a double release freed two places")
	}
	adm.Release()
	releases[1]()
	c.limiter.mu.Lock()
	n := len(c.limiter.inFlight)
	c.limiter.mu.Unlock()
	if n != 1 { // sbB's never released above
		t.Fatalf("%d sandboxes tracked, want only the one with a request in progress", n)
	}
}

func TestLimitFailedCredentials(t *testing.T) {
	f := newAuthority()
	c := newLimitedChecker(t, ModeKubernetes, f, Limits{FailedAuthPerClient: slow, FailedAuthPerClientBurst: 3})
	for i := range 3 {
		if got := code(check(c, context.Background(), from("192.0.2.9:1", "Bearer guess-"+string(rune('a'+i))), sbA, 8888)); got != CodeInvalidCredentials {
			t.Fatalf("guess %d: %s", i, got)
		}
	}
	reviews := f.tokenN.Load()
	for _, tok := range []string{"guess-x", "alice-token"} {
		err := check(c, context.Background(), from("192.0.2.9:1", "Bearer "+tok), sbA, 8888)
		if e, ok := err.(*Error); !ok || e.Status != 429 || e.Code != CodeTooManyFailures {
			t.Fatalf("%s after 3 refused credentials: %v", tok, err)
		}
	}
	if f.tokenN.Load() != reviews {
		t.Fatal("a blocked address's tokens were still reviewed")
	}
	if got := code(check(c, context.Background(), from("192.0.2.10:1", "Bearer alice-token"), sbA, 8888)); got != "allowed" {
		t.Fatalf("another address: %s", got)
	}
	// Forbidden (403) is not a failed credential.
	for range 5 {
		check(c, context.Background(), from("192.0.2.11:1", "Bearer bob-token"), sbA, 8888)
	}
	if got := code(check(c, context.Background(), from("192.0.2.11:1", "Bearer alice-token"), sbA, 8888)); got != "allowed" {
		t.Fatalf("after refusals that were not about credentials: %s", got)
	}
}

func TestLimitTablesBounded(t *testing.T) {
	c := newLimitedChecker(t, ModeAllowAll, newAuthority(), Limits{PerIdentity: 1000, PerIdentityBurst: 10, PerSandbox: 1000, TableSize: 8})
	for i := range 1000 {
		addr := "10.0." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250) + ":1"
		sb := resolver.Key{Namespace: "ns", Name: "sb-" + strconv.Itoa(i)}
		if _, err := c.Check(context.Background(), from(addr), sb, 8888, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.limiter.clients.Len(); n > 8 {
		t.Fatalf("%d client buckets, want at most 8", n)
	}
	if n := c.limiter.sandboxes.Len(); n > 8 {
		t.Fatalf("%d sandbox buckets, want at most 8", n)
	}
}

// TestAllowAllWithOnlyTheFailureLimit: the failed-credentials limit means
// nothing without credentials; allow-all with it alone is not enforced.
func TestAllowAllWithOnlyTheFailureLimit(t *testing.T) {
	c := newLimitedChecker(t, ModeAllowAll, newAuthority(), Limits{FailedAuthPerClient: 0.5, FailedAuthPerClientBurst: 30})
	if c.Enforcing() {
		t.Fatal("allow-all with only the failed-credentials limit must not be checked")
	}
}

func TestMissingCredentialsAreNoFailure(t *testing.T) {
	c := newLimitedChecker(t, ModeKubernetes, newAuthority(), Limits{FailedAuthPerClient: slow, FailedAuthPerClientBurst: 1})
	for range 5 {
		if got := code(check(c, context.Background(), from("192.0.2.1:1"), sbA, 8888)); got != CodeMissingCredentials {
			t.Fatal(got)
		}
	}
	if got := code(check(c, context.Background(), from("192.0.2.1:1", "Bearer alice-token"), sbA, 8888)); got != "allowed" {
		t.Fatalf("after requests without a credential: %s", got)
	}
}
