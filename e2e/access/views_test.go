package access

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sandbox-router/sandbox-router/access"
	akube "github.com/sandbox-router/sandbox-router/access/kube"
	"github.com/sandbox-router/sandbox-router/dashboard"
	"github.com/sandbox-router/sandbox-router/e2e/cluster"
)

// countingViews counts the view reviews that reach the API server.
type countingViews struct {
	*akube.AccessReviewer
	n atomic.Int64
}

func (c *countingViews) MayView(ctx context.Context, id access.Identity, q access.ViewQuery) (bool, error) {
	c.n.Add(1)
	return c.AccessReviewer.MayView(ctx, id, q)
}

// TestViewAccess runs the dashboard's question (may this principal list
// or get the Sandbox API's objects) through access/kube's reviewers, as
// the unprivileged router, against the real API server's RBAC: one
// ServiceAccount may list sandboxes in team-a, one may get team-a/sb1 by
// resourceNames, one may do nothing. The answers are cached: asked again,
// no review reaches the API server.
func TestViewAccess(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	lister := e.serviceAccount(t, agents, "view-lister")
	getter := e.serviceAccount(t, agents, "view-getter")
	nobody := e.serviceAccount(t, agents, "view-nobody")
	e.grantView(t, teamA, "view-lister", "list", sa(agents, "view-lister"))
	e.grantView(t, teamA, "view-getter", "get", sa(agents, "view-getter"), "sb1")

	rc := kubernetes.NewForConfigOrDie(e.c.RouterConfig())
	reviewer := akube.NewAccessReviewer(rc.AuthorizationV1().SubjectAccessReviews())
	views := &countingViews{AccessReviewer: reviewer}
	checker, err := access.New(access.Options{
		Modes:   []access.Mode{access.ModeKubernetes},
		Tokens:  akube.NewTokenReviewer(rc.AuthenticationV1().TokenReviews(), nil),
		Access:  reviewer,
		Views:   views,
		Metrics: access.NewMetrics(prometheus.NewRegistry()),
		// Long enough that nothing expires during the test.
		DecisionTTL: time.Hour, DecisionNegativeTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	principal := func(token string) access.Principal {
		p, err := checker.Authenticate(ctx, token, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	pl, pg, pn := principal(lister), principal(getter), principal(nobody)

	// RBAC's informers take a moment to see new bindings: ask uncached
	// until both grants show, so the cached answers below are the final
	// ones.
	waitAllowed(t, reviewer, pl, access.ViewQuery{Verb: "list", Group: akube.Group, Resource: "sandboxes", Namespace: teamA})
	waitAllowed(t, reviewer, pg, access.ViewQuery{Verb: "get", Group: akube.Group, Resource: "sandboxes", Namespace: teamA, Name: "sb1"})

	list := func(resource, group, ns string) access.ViewQuery {
		return access.ViewQuery{Verb: access.ViewList, Group: group, Resource: resource, Namespace: ns}
	}
	get := func(ns, name string) access.ViewQuery {
		return access.ViewQuery{Verb: access.ViewGet, Group: akube.Group, Resource: "sandboxes", Namespace: ns, Name: name}
	}
	const ext = "extensions.agents.x-k8s.io"
	cases := []struct {
		who  string
		p    access.Principal
		q    access.ViewQuery
		want bool
	}{
		{"lister", pl, list("sandboxes", akube.Group, teamA), true},
		{"lister", pl, list("sandboxes", akube.Group, teamB), false},
		{"lister", pl, list("sandboxclaims", ext, teamA), false}, // granted sandboxes only
		{"lister", pl, get(teamA, "sb2"), false},                 // list grants no get
		{"getter", pg, get(teamA, "sb1"), true},
		{"getter", pg, get(teamA, "sb2"), false},
		{"getter", pg, list("sandboxes", akube.Group, teamA), false}, // resourceNames never grant list
		{"nobody", pn, list("sandboxes", akube.Group, teamA), false},
		{"nobody", pn, get(teamA, "sb1"), false},
	}
	for _, tc := range cases {
		got, err := checker.MayView(ctx, tc.p, tc.q)
		if err != nil || got != tc.want {
			t.Errorf("%s %s %s %s/%s: %v %v, want %v", tc.who, tc.q.Verb, tc.q.Resource, tc.q.Namespace, tc.q.Name, got, err, tc.want)
		}
	}
	reviews := views.n.Load()
	if reviews != int64(len(cases)) {
		t.Fatalf("%d reviews for %d questions", reviews, len(cases))
	}
	for _, tc := range cases {
		if got, err := checker.MayView(ctx, tc.p, tc.q); err != nil || got != tc.want {
			t.Errorf("cached %s %+v: %v %v", tc.who, tc.q, got, err)
		}
	}
	if views.n.Load() != reviews {
		t.Fatalf("asked again: %d reviews, want %d (cached)", views.n.Load(), reviews)
	}

	// The dashboard's adapter over the same Checker: the same answers,
	// from the same cache.
	auth, err := dashboard.AccessAuth(checker, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.Viewer(ctx, getter, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if !v.MayGet(ctx, teamA, "sb1") || v.MayGet(ctx, teamA, "sb2") || v.MayList(ctx, dashboard.ResourceSandboxes, teamA) {
		t.Fatal("the dashboard's viewer answers otherwise")
	}
	if views.n.Load() != reviews {
		t.Fatalf("the adapter asked again: %d reviews, want %d", views.n.Load(), reviews)
	}
	if _, err := auth.Viewer(ctx, "not-a-token", netip.Addr{}); err == nil {
		t.Fatal("signed in with a made-up token")
	}
}

// grantView lets subject verb (list, or get on names) the sandboxes of ns.
func (e *env) grantView(t *testing.T, ns, name, verb string, subject rbacv1.Subject, names ...string) {
	t.Helper()
	rules := []rbacv1.PolicyRule{{APIGroups: []string{akube.Group}, Resources: []string{akube.Resource}, Verbs: []string{verb}, ResourceNames: names}}
	if err := cluster.Grant(t.Context(), e.cs, ns, name, rules, subject); err != nil {
		t.Fatal(err)
	}
}

// waitAllowed asks the API server (uncached) until it allows q for p's
// user and groups (all RBAC reads of an identity).
func waitAllowed(t *testing.T, r *akube.AccessReviewer, p access.Principal, q access.ViewQuery) {
	t.Helper()
	id := access.Identity{User: p.User, Groups: p.Groups}
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, err := r.MayView(t.Context(), id, q)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never allowed %+v: %v", id.User, q, err)
		}
		time.Sleep(50 * time.Millisecond) // RBAC's informer catching up
	}
}
