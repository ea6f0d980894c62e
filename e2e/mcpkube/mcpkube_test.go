package mcpkube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
	"github.com/sandbox-router/sandbox-router/mcp"
	"github.com/sandbox-router/sandbox-router/mcp/kube"
)

const (
	teamA, teamB = "team-a", "team-b"
	agents       = "agents" // the ServiceAccounts' namespace
	// waitTimeout bounds every wait for a state to show.
	waitTimeout = 60 * time.Second
)

// ipBase keeps this package's pod addresses apart from the other e2e
// packages' sims, which go test may run at the same time.
var ipBase = netip.MustParseAddr("127.9.0.1")

var sandboxGVR = schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}

// The identities, ServiceAccounts in agents:
//   - alice may create, get and delete sandboxclaims and get, list and
//     patch sandboxes in team-a (what the MCP tools need);
//   - bob may get, list, patch and delete sandboxes in team-a, and
//     nothing on claims;
//   - mallory may get and list sandboxes in team-a, and nothing else.
//
// Nobody has anything in team-b.
var roles = map[string][]rbacv1.PolicyRule{
	"alice": {
		{APIGroups: []string{sim.ClaimGroup}, Resources: []string{"sandboxclaims"}, Verbs: []string{"create", "get", "delete"}},
		{APIGroups: []string{sim.Group}, Resources: []string{"sandboxes"}, Verbs: []string{"get", "list", "patch"}},
	},
	"bob": {
		{APIGroups: []string{sim.Group}, Resources: []string{"sandboxes"}, Verbs: []string{"get", "list", "patch", "delete"}},
	},
	"mallory": {
		{APIGroups: []string{sim.Group}, Resources: []string{"sandboxes"}, Verbs: []string{"get", "list"}},
	},
}

func username(sa string) string { return cluster.ServiceAccountUser(agents, sa) }

// env is the cluster with both CRDs, the sim and the claim controller on
// team-a, the identities' tokens, and mcp/kube built from the router's
// config (user "router", never granted anything).
type env struct {
	c      *cluster.Cluster
	sim    *sim.Sim
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	kube   *kube.Cluster
	tokens map[string]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := cluster.Start(t)
	ctx := t.Context()
	e := &env{c: c, cs: kubernetes.NewForConfigOrDie(c.AdminConfig()), dyn: dynamic.NewForConfigOrDie(c.AdminConfig()), tokens: map[string]string{}}
	if err := c.ApplyCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	crd, err := sim.ClaimCRDPath()
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.ApplyManifests(ctx, c.AdminConfig(), crd); err != nil {
		t.Fatal(err)
	}
	if err := cluster.CreateNamespaces(ctx, e.cs, teamA, teamB, agents); err != nil {
		t.Fatal(err)
	}
	for sa, rules := range roles {
		e.tokens[sa] = e.identity(t, sa, rules)
	}
	// Wait until the authorizer has every grant (and refusal) in effect.
	e.waitAllowed(t, "alice", "create", sim.ClaimGroup, "sandboxclaims", teamA, true)
	e.waitAllowed(t, "alice", "patch", sim.Group, "sandboxes", teamA, true)
	e.waitAllowed(t, "bob", "delete", sim.Group, "sandboxes", teamA, true)
	e.waitAllowed(t, "mallory", "list", sim.Group, "sandboxes", teamA, true)

	s, err := sim.New(sim.Options{Config: c.AdminConfig(), Namespaces: []string{teamA}, IPBase: ipBase, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	e.sim = s
	stop, err := sim.RunClaims(ctx, e.dyn, teamA, "v1beta1", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	// The router's own config: user "router", with no grant in this
	// cluster, so anything done with it would be refused.
	e.kube, err = kube.New(kube.Options{Config: c.RouterConfig(), SandboxVersion: "v1beta1", Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// identity creates the ServiceAccount with a Role and RoleBinding of
// rules in team-a, and returns a token for it (TokenRequest, the API
// server's audience).
func (e *env) identity(t *testing.T, name string, rules []rbacv1.PolicyRule) string {
	t.Helper()
	ctx := t.Context()
	tok, err := cluster.CreateServiceAccount(ctx, e.cs, agents, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Grant(ctx, e.cs, teamA, name, rules, cluster.ServiceAccountSubject(agents, name)); err != nil {
		t.Fatal(err)
	}
	return tok
}

// waitAllowed waits until a SubjectAccessReview of the ServiceAccount
// answers want.
func (e *env) waitAllowed(t *testing.T, sa, verb, group, resource, ns string, want bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	attrs := authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: group, Resource: resource}
	if err := cluster.WaitAllowed(ctx, e.cs, username(sa), cluster.ServiceAccountGroups(agents), attrs, want); err != nil {
		t.Fatal(err)
	}
}

// TestCallerIdentity drives mcp/kube with three identities' own tokens
// on the real API server: what RBAC allows happens, what it refuses is
// ErrForbidden and leaves everything as it was, and the audit log names
// the ServiceAccount, never the router or the admin.
func TestCallerIdentity(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	alice, bob, mallory := e.tokens["alice"], e.tokens["bob"], e.tokens["mallory"]
	sandboxes := e.dyn.Resource(sandboxGVR).Namespace(teamA)
	claims := e.dyn.Resource(sim.ClaimGVR).Namespace(teamA)

	// CreateClaim: the claim controller makes the Sandbox, the sim its pod.
	if err := e.kube.CreateClaim(ctx, alice, teamA, "alice-1", "python"); err != nil {
		t.Fatalf("CreateClaim as alice: %v", err)
	}
	claim, err := claims.Get(ctx, "alice-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pool, _, _ := unstructured.NestedString(claim.Object, "spec", "warmPoolRef", "name"); pool != "python" {
		t.Errorf("claim spec %v", claim.Object["spec"])
	}
	sb := waitObject(t, sandboxes, "alice-1", "the claim's sandbox", func(u *unstructured.Unstructured) bool { return u != nil })
	if ref := metav1.GetControllerOf(sb); ref == nil || ref.UID != claim.GetUID() {
		t.Errorf("sandbox controller %+v, want the claim %s", ref, claim.GetUID())
	}
	if _, err := e.sim.WaitPod(ctx, teamA, "alice-1", func(p sim.PodInfo) bool { return p.Ready }); err != nil {
		t.Fatal(err)
	}
	if err := e.kube.CreateClaim(ctx, alice, teamA, "alice-1", "python"); !errors.Is(err, mcp.ErrConflict) {
		t.Errorf("CreateClaim of an existing claim: %v, want ErrConflict", err)
	}

	// SetSuspended: the spec changes, and the sim follows it.
	for _, suspend := range []bool{true, false} {
		if err := e.kube.SetSuspended(ctx, alice, teamA, "alice-1", suspend); err != nil {
			t.Fatalf("SetSuspended(%v) as alice: %v", suspend, err)
		}
		want := map[bool]string{true: "Suspended", false: "Running"}[suspend]
		waitObject(t, sandboxes, "alice-1", "spec.operatingMode "+want+" and the sim's condition", func(u *unstructured.Unstructured) bool {
			mode, _, _ := unstructured.NestedString(u.Object, "spec", "operatingMode")
			return mode == want && condition(u, "Suspended") == map[bool]string{true: "True", false: "False"}[suspend]
		})
	}
	if _, err := e.sim.WaitPod(ctx, teamA, "alice-1", func(p sim.PodInfo) bool { return p.Ready }); err != nil {
		t.Fatal(err)
	}

	// mallory may read, not write; bob may not delete a claim's sandbox.
	for _, tc := range []struct {
		what string
		err  error
	}{
		{"CreateClaim as mallory", e.kube.CreateClaim(ctx, mallory, teamA, "mallory-1", "python")},
		{"SetSuspended as mallory", e.kube.SetSuspended(ctx, mallory, teamA, "alice-1", true)},
		{"Delete as mallory", e.kube.Delete(ctx, mallory, teamA, "alice-1")},
		{"Delete of a claim's sandbox as bob", e.kube.Delete(ctx, bob, teamA, "alice-1")},
		{"CreateClaim as alice in team-b", e.kube.CreateClaim(ctx, alice, teamB, "alice-b", "python")},
		{"SetSuspended with a token the API server does not know", e.kube.SetSuspended(ctx, "not-a-token", teamA, "alice-1", true)},
		{"SetSuspended without a token", e.kube.SetSuspended(ctx, "", teamA, "alice-1", true)},
	} {
		if !errors.Is(tc.err, mcp.ErrForbidden) {
			t.Errorf("%s: %v, want ErrForbidden", tc.what, tc.err)
		}
		if tc.err != nil && (strings.Contains(tc.err.Error(), mallory) || strings.Contains(tc.err.Error(), bob) || strings.Contains(tc.err.Error(), alice)) {
			t.Errorf("%s: the error holds a token", tc.what)
		}
	}
	now, err := sandboxes.Get(ctx, "alice-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if now.GetUID() != sb.GetUID() || now.GetDeletionTimestamp() != nil {
		t.Errorf("alice-1 changed by refused calls: uid %s (was %s), deleting %v", now.GetUID(), sb.GetUID(), now.GetDeletionTimestamp())
	}
	if mode, _, _ := unstructured.NestedString(now.Object, "spec", "operatingMode"); mode != "Running" {
		t.Errorf("alice-1 spec.operatingMode %q after refused patches", mode)
	}
	if _, err := claims.Get(ctx, "mallory-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("mallory's refused claim: %v", err)
	}

	// ListNames with a label selector: the admin's labelled sandboxes
	// (suspended: no pods needed), without the unclaimed warm-pool one.
	for name, labels := range map[string]map[string]string{
		"blue-1": {"team": "blue"}, "blue-2": {"team": "blue"}, "red-1": {"team": "red"},
		"pool-blue": {"team": "blue", kube.LabelWarmPool: "python"},
	} {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": sandboxGVR.GroupVersion().String(), "kind": "Sandbox",
			"metadata": map[string]any{"name": name, "namespace": teamA},
			"spec":     map[string]any{"operatingMode": "Suspended"},
		}}
		u.SetLabels(labels)
		if _, err := sandboxes.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		who, selector string
		limit         int64
		want          []string
	}{
		{"alice", "team=blue", 0, []string{"blue-1", "blue-2"}},
		{"mallory", "team=blue", 0, []string{"blue-1", "blue-2"}},
		{"alice", "team=blue", 1, []string{"blue-1"}},
		{"bob", "team in (blue,red)", 10, []string{"blue-1", "blue-2", "red-1"}},
		{"alice", "", 0, []string{"alice-1", "blue-1", "blue-2", "red-1"}},
		{"alice", "team=green", 0, []string{}},
	} {
		got, err := e.kube.ListNames(ctx, e.tokens[tc.who], teamA, tc.selector, tc.limit)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ListNames as %s (%q, limit %d) = %v, %v; want %v", tc.who, tc.selector, tc.limit, got, err, tc.want)
		}
	}
	if _, err := e.kube.ListNames(ctx, alice, teamB, "", 0); !errors.Is(err, mcp.ErrForbidden) {
		t.Errorf("ListNames in team-b: %v, want ErrForbidden", err)
	}
	if _, err := e.kube.ListNames(ctx, alice, teamA, "team in (", 0); !errors.Is(err, mcp.ErrInvalid) {
		t.Errorf("ListNames with a bad selector: %v, want ErrInvalid", err)
	}

	// Delete: bob (sandbox rights only) deletes a sandbox no claim owns;
	// alice deletes her claim, and the claim controller its Sandbox.
	if err := e.kube.Delete(ctx, bob, teamA, "red-1"); err != nil {
		t.Fatalf("Delete red-1 as bob: %v", err)
	}
	waitObject(t, sandboxes, "red-1", "red-1 gone", func(u *unstructured.Unstructured) bool { return u == nil })
	if err := e.kube.Delete(ctx, alice, teamA, "alice-1"); err != nil {
		t.Fatalf("Delete alice-1 as alice: %v", err)
	}
	waitObject(t, sandboxes, "alice-1", "alice-1 gone with its claim", func(u *unstructured.Unstructured) bool { return u == nil })
	if _, err := claims.Get(ctx, "alice-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("claim alice-1 after Delete: %v", err)
	}
	if err := e.kube.Delete(ctx, alice, teamA, "alice-1"); !errors.Is(err, mcp.ErrNotFound) {
		t.Errorf("Delete of a deleted sandbox: %v, want ErrNotFound", err)
	}
	if err := e.kube.SetSuspended(ctx, alice, teamA, "alice-1", true); !errors.Is(err, mcp.ErrNotFound) {
		t.Errorf("SetSuspended of a deleted sandbox: %v, want ErrNotFound", err)
	}

	// The audit log: the callers made the writes, by their own names.
	type key struct{ verb, user, resource, name string }
	want := []key{
		{"create", username("alice"), "sandboxclaims", "alice-1"},
		{"patch", username("alice"), "sandboxes", "alice-1"},
		{"create", username("mallory"), "sandboxclaims", ""}, // refused: no name
		{"delete", username("bob"), "sandboxes", "red-1"},
		{"delete", username("alice"), "sandboxclaims", "alice-1"},
		{"delete", "admin", "sandboxes", "alice-1"}, // the claim controller, as the garbage collector
	}
	codes := map[key]int{want[0]: 201, want[1]: 200, want[2]: 403, want[3]: 200, want[4]: 200, want[5]: 200}
	has := func(evs []cluster.AuditEvent, k key) bool {
		return slices.ContainsFunc(evs, func(ev cluster.AuditEvent) bool {
			return ev.Verb == k.verb && ev.User == k.user && ev.Resource == k.resource && ev.Name == k.name &&
				ev.Namespace == teamA && ev.Code == codes[k]
		})
	}
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	evs, err := e.c.WaitAuditEvents(wctx, func(evs []cluster.AuditEvent) bool {
		return !slices.ContainsFunc(want, func(k key) bool { return !has(evs, k) })
	})
	if err != nil {
		for _, k := range want {
			if !has(evs, k) {
				t.Errorf("audit: no %+v (code %d)", k, codes[k])
			}
		}
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.User == "router" {
			t.Errorf("audit: the router's identity was used: %+v", ev)
		}
		if ev.Resource == "sandboxclaims" && ev.User == "admin" {
			t.Errorf("audit: a claim written as admin: %+v", ev)
		}
	}
	var creates []string
	for _, ev := range evs {
		if ev.Resource == "sandboxclaims" && ev.Verb == "create" {
			creates = append(creates, fmt.Sprintf("%s %s %d", ev.User, ev.Name, ev.Code))
		}
	}
	t.Logf("audited creates of sandboxclaims: %v", creates)
}

// condition is the status of the object's condition typ, "" if none.
func condition(u *unstructured.Unstructured, typ string) string {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == typ {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

// waitObject watches the named object until cond holds (cond(nil): it
// does not exist) and returns what cond last saw.
func waitObject(t *testing.T, res dynamic.ResourceInterface, name, what string, cond func(*unstructured.Unstructured) bool) *unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	last, err := cluster.WaitObject(ctx, res, name, cond)
	if err != nil {
		desc := "absent"
		if last != nil {
			desc = fmt.Sprintf("uid %s, spec %v, status %v", last.GetUID(), last.Object["spec"], last.Object["status"])
		}
		t.Fatalf("%s (%s): %v; last seen: %s", name, what, err, desc)
	}
	return last
}
