package access

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/access/scoped"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// viewAuthority answers view questions from a table of "user verb
// resource namespace[/name]" grants, counting the reviews.
type viewAuthority struct {
	*fakeAuthority
	views map[string]bool
	n     atomic.Int64
}

func (v *viewAuthority) MayView(ctx context.Context, id Identity, q ViewQuery) (bool, error) {
	v.n.Add(1)
	v.mu.Lock()
	down := v.down
	v.mu.Unlock()
	if down {
		return false, errDown
	}
	obj := q.Namespace
	if q.Name != "" {
		obj += "/" + q.Name
	}
	return v.views[id.User+" "+q.Verb+" "+q.Resource+" "+obj], nil
}

func newViewChecker(t *testing.T, modes ...Mode) (*Checker, *viewAuthority, *clock, ed25519.PrivateKey) {
	t.Helper()
	f := &viewAuthority{fakeAuthority: newAuthority(), views: map[string]bool{
		"alice list sandboxes team-a":     true,
		"alice list sandboxclaims team-a": true,
		"bob get sandboxes team-b/sb1":    true,
	}}
	uid := uids{sbA: "uid-a"}
	priv, verifier := newTestVerifier(t)
	c, err := New(Options{Modes: modes, Tokens: f, Access: f, Scoped: verifier, Sandboxes: uid,
		Metrics: NewMetrics(prometheus.NewRegistry()), DecisionTTL: 30 * time.Second, DecisionNegativeTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Unix(1_000_000, 0)}
	c.viewMemo.now = clk.Now
	return c, f, clk, priv
}

func list(resource, ns string) ViewQuery {
	return ViewQuery{Verb: ViewList, Group: viewable[resource], Resource: resource, Namespace: ns}
}

func getSandbox(ns, name string) ViewQuery {
	return ViewQuery{Verb: ViewGet, Group: "agents.x-k8s.io", Resource: "sandboxes", Namespace: ns, Name: name}
}

func TestMayViewKubernetes(t *testing.T) {
	c, f, clk, _ := newViewChecker(t, ModeKubernetes)
	ctx := t.Context()
	alice, err := c.Authenticate(ctx, "alice-token", netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := c.Authenticate(ctx, "bob-token", netip.Addr{})
	cases := []struct {
		p    Principal
		q    ViewQuery
		want bool
	}{
		{alice, list("sandboxes", "team-a"), true},
		{alice, list("sandboxes", "team-b"), false},
		{alice, list("sandboxclaims", "team-a"), true},
		{alice, list("sandboxtemplates", "team-a"), false},
		{bob, list("sandboxes", "team-b"), false},
		{bob, getSandbox("team-b", "sb1"), true},
		{bob, getSandbox("team-b", "sb2"), false},
		{alice, getSandbox("Team-B", "sb1"), false}, // no such name: not asked
		{Principal{}, list("sandboxes", "team-a"), false},
		{alice, list("sandboxes", ""), false}, // every namespace at once: asked
		{bob, getSandbox("", "sb1"), false},   // get needs a namespace: not asked
	}
	for _, tc := range cases {
		got, err := c.MayView(ctx, tc.p, tc.q)
		if err != nil || got != tc.want {
			t.Errorf("%s %+v: %v %v, want %v", tc.p.User, tc.q, got, err, tc.want)
		}
	}
	asked := f.n.Load()
	if asked != 8 {
		t.Fatalf("%d reviews, want 8", asked)
	}
	// Cached: asked again, no review; a refusal lives shorter than a yes.
	for _, tc := range cases {
		_, _ = c.MayView(ctx, tc.p, tc.q)
	}
	if f.n.Load() != asked {
		t.Fatalf("%d reviews after the cached round, want %d", f.n.Load(), asked)
	}
	clk.advance(6 * time.Second)
	_, _ = c.MayView(ctx, alice, list("sandboxes", "team-b"))
	_, _ = c.MayView(ctx, alice, list("sandboxes", "team-a"))
	if f.n.Load() != asked+1 {
		t.Fatalf("%d reviews after the refusal expired, want %d", f.n.Load(), asked+1)
	}
	// The API server away: a known answer keeps serving, an unknown one
	// is a 503.
	f.set(func() { f.down = true })
	clk.advance(time.Minute)
	if ok, err := c.MayView(ctx, alice, list("sandboxes", "team-a")); !ok || err != nil {
		t.Fatalf("stale answer: %v %v", ok, err)
	}
	if _, err := c.MayView(ctx, alice, list("sandboxwarmpools", "team-a")); code(err) != CodeUnavailable {
		t.Fatalf("unknown answer while down: %v", err)
	}
}

func TestMayViewKeysApart(t *testing.T) {
	a := Identity{User: "a"}
	a.digest = identityDigest(a)
	seen := map[digest]ViewQuery{}
	for _, q := range []ViewQuery{list("sandboxes", "ns"), getSandbox("ns", "x"), getSandbox("n", "sx"), list("sandboxclaims", "ns")} {
		k := viewKey(a, q)
		if prev, dup := seen[k]; dup {
			t.Fatalf("%+v and %+v share a key", prev, q)
		}
		seen[k] = q
	}
	if viewKey(a, getSandbox("ns", "x")) == decisionKey(a, resolver.Key{Namespace: "ns", Name: "x"}) {
		t.Fatal("a view shares a data-plane decision's key")
	}
}

func TestMayViewRefusesOtherQuestions(t *testing.T) {
	c, f, _, _ := newViewChecker(t, ModeKubernetes)
	alice, _ := c.Authenticate(t.Context(), "alice-token", netip.Addr{})
	for _, q := range []ViewQuery{
		{Verb: "delete", Group: "agents.x-k8s.io", Resource: "sandboxes", Namespace: "team-a"},
		{Verb: ViewList, Group: "", Resource: "secrets", Namespace: "team-a"},
		{Verb: ViewList, Group: "agents.x-k8s.io", Resource: "sandboxclaims", Namespace: "team-a"}, // wrong group
		{Verb: ViewList, Group: "agents.x-k8s.io", Resource: "sandboxes", Namespace: "team-a", Name: "x"},
		{Verb: ViewGet, Group: "agents.x-k8s.io", Resource: "sandboxes", Namespace: "team-a"},
	} {
		if ok, err := c.MayView(t.Context(), alice, q); ok || !errors.Is(err, ErrBadViewQuery) {
			t.Errorf("%+v: %v %v", q, ok, err)
		}
	}
	if f.n.Load() != 0 {
		t.Fatalf("%d reviews of refused questions", f.n.Load())
	}
}

func TestMayViewTokenReviewAndScoped(t *testing.T) {
	c, f, _, priv := newViewChecker(t, ModeTokenReview, ModeScopedToken)
	ctx := t.Context()
	bob, err := c.Authenticate(ctx, "bob-token", netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.MayView(ctx, bob, list("sandboxtemplates", "anywhere")); !ok || err != nil {
		t.Fatalf("tokenreview: %v %v", ok, err)
	}
	tok, err := scoped.MintV2(priv, scoped.Claims{KeyID: "k1", Namespace: sbA.Namespace, Name: sbA.Name, UID: "uid-a",
		Expires: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Authenticate(ctx, tok, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		q    ViewQuery
		want bool
	}{
		{getSandbox(sbA.Namespace, sbA.Name), true},
		{getSandbox(sbA.Namespace, "other"), false},
		{list("sandboxes", sbA.Namespace), false},
	} {
		if ok, err := c.MayView(ctx, p, tc.q); ok != tc.want || err != nil {
			t.Errorf("scoped %+v: %v %v", tc.q, ok, err)
		}
	}
	if f.n.Load() != 0 {
		t.Fatalf("%d reviews without a SubjectAccessReview mode", f.n.Load())
	}
}
