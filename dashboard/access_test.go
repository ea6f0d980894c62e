package dashboard

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// fakeAuthority is the API server as the access Checker asks it: tokens
// it knows, and grants of "user verb resource namespace[/name]".
type fakeAuthority struct {
	mu     sync.Mutex
	tokens map[string]access.Identity
	grants map[string]bool
	down   bool
	views  atomic.Int64
}

var errAway = errors.New("connection refused")

func (f *fakeAuthority) AuthenticateToken(_ context.Context, token string) (access.Identity, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return access.Identity{}, false, errAway
	}
	id, ok := f.tokens[token]
	return id, ok, nil
}

func (f *fakeAuthority) MayReach(context.Context, access.Identity, resolver.Key) (bool, error) {
	return false, nil
}

func (f *fakeAuthority) MayView(_ context.Context, id access.Identity, q access.ViewQuery) (bool, error) {
	f.views.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return false, errAway
	}
	obj := q.Namespace
	if q.Name != "" {
		obj += "/" + q.Name
	}
	return f.grants[id.User+" "+q.Verb+" "+q.Group+"/"+q.Resource+" "+obj], nil
}

func newAccessChecker(t *testing.T, f *fakeAuthority, modes ...access.Mode) *access.Checker {
	t.Helper()
	c, err := access.New(access.Options{Modes: modes, Tokens: f, Access: f, Metrics: access.NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAccessAuth(t *testing.T) {
	f := &fakeAuthority{
		tokens: map[string]access.Identity{"ada-token": {User: "ada"}, "bo-token": {User: "bo"}},
		grants: map[string]bool{
			"ada list agents.x-k8s.io/sandboxes team-a":                   true,
			"ada list extensions.agents.x-k8s.io/sandboxwarmpools team-a": true,
			"bo get agents.x-k8s.io/sandboxes team-a/sb1":                 true,
			"bo list extensions.agents.x-k8s.io/sandboxes team-a":         true, // the wrong group grants nothing
		},
	}
	auth, err := AccessAuth(newAccessChecker(t, f, access.ModeKubernetes), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ada, err := auth.Viewer(ctx, "ada-token", netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	bo, _ := auth.Viewer(ctx, "bo-token", netip.Addr{})
	if userName(ada) != "ada" {
		t.Fatalf("user %q", userName(ada))
	}
	checks := []struct {
		what string
		got  bool
		want bool
	}{
		{"ada lists sandboxes of team-a", ada.MayList(ctx, ResourceSandboxes, "team-a"), true},
		{"ada lists sandboxes of team-b", ada.MayList(ctx, ResourceSandboxes, "team-b"), false},
		{"ada lists warm pools of team-a", ada.MayList(ctx, ResourceWarmPools, "team-a"), true},
		{"ada lists claims of team-a", ada.MayList(ctx, ResourceClaims, "team-a"), false},
		{"ada lists an unknown resource", ada.MayList(ctx, Resource("secrets"), "team-a"), false},
		{"bo lists sandboxes of team-a", bo.MayList(ctx, ResourceSandboxes, "team-a"), false},
		{"bo gets team-a/sb1", bo.MayGet(ctx, "team-a", "sb1"), true},
		{"bo gets team-a/sb2", bo.MayGet(ctx, "team-a", "sb2"), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	asked := f.views.Load()
	_ = ada.MayList(ctx, ResourceSandboxes, "team-a")
	_ = bo.MayGet(ctx, "team-a", "sb1")
	if f.views.Load() != asked {
		t.Fatalf("asked again: %d reviews, want %d", f.views.Load(), asked)
	}

	// Refusals keep their meaning: an unknown token is "sign in", the API
	// server away is 503, not 401.
	if _, err := auth.Viewer(ctx, "nobody", netip.Addr{}); err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrForbidden) {
		t.Fatalf("unknown token: %v", err)
	}
	f.mu.Lock()
	f.down = true
	f.mu.Unlock()
	if _, err := auth.Viewer(ctx, "new-token", netip.Addr{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("API server away: %v", err)
	}
	// Nothing cached and nobody to ask: hidden, not shown.
	if ada.MayList(ctx, ResourceClaims, "team-b") {
		t.Fatal("shown while unknown")
	}

	// Through the handler: 503 with Retry-After.
	h := start(t, Options{Sandboxes: fixture(), Auth: auth})
	rec := call(h, "POST", "/api/session", signInBody("new-token", ""), nil)
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("sign-in while away: %d %s", rec.Code, rec.Body)
	}
}

func TestAccessAuthModes(t *testing.T) {
	f := &fakeAuthority{tokens: map[string]access.Identity{"t": {User: "u"}}}
	if _, err := AccessAuth(newAccessChecker(t, f, access.ModeAllowAll), nil); err == nil {
		t.Fatal("allow-all: nobody could sign in")
	}
	auth, err := AccessAuth(newAccessChecker(t, f, access.ModeTokenReview), nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.Viewer(t.Context(), "t", netip.Addr{})
	if err != nil || !v.MayList(t.Context(), ResourceTemplates, "anywhere") || f.views.Load() != 0 {
		t.Fatalf("tokenreview sees everything: %v %d reviews", err, f.views.Load())
	}
}
