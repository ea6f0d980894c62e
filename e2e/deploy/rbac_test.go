package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
)

var (
	sandboxesV1beta1  = schema.GroupVersionResource{Group: "agents.x-k8s.io", Version: "v1beta1", Resource: "sandboxes"}
	sandboxesV1alpha1 = schema.GroupVersionResource{Group: "agents.x-k8s.io", Version: "v1alpha1", Resource: "sandboxes"}
)

// extensionsGroup and extensionResources are the extensions API the
// dashboard's catalog reads (deploy/rbac/dashboard).
const extensionsGroup = "extensions.agents.x-k8s.io"

var extensionResources = []string{"sandboxtemplates", "sandboxwarmpools", "sandboxclaims"}

const (
	// rbacWait bounds the wait for a new binding to reach the API server's
	// RBAC cache (an informer, so a binding is not effective at once), and
	// a leader election.
	rbacWait = 30 * time.Second
	// routerNS is the router's own namespace, where its Lease lives.
	routerNS = cluster.RouterNamespace
	// leaderElectionRole is the Role (and RoleBinding) of the Lease.
	leaderElectionRole = "sandbox-router-leader-election"
)

// identity is one way the router authenticates: the test cluster's
// non-admin user (bound by the test, as e2e tests and the demo do), or
// the ServiceAccount the manifests themselves bind.
type identity struct {
	name   string
	cfg    *rest.Config
	user   string
	groups []string
}

// TestRBACOnAPIServer applies the RBAC of deploy/ to a real API server and
// shows with the router's identities that it grants exactly what the
// resolver and the activator need: reads of sandboxes and pods and merge
// patches of sandboxes, per namespace (overlays/namespaced), then
// cluster-wide (deploy/rbac through cluster.GrantRouter, with the xDS
// server's EndpointSlice reads), and the leader-election Lease in the
// router's namespace in both. Last, every kustomization applies.
func TestRBACOnAPIServer(t *testing.T) {
	c := apiServer(t)
	ctx := t.Context()
	admin := kubernetes.NewForConfigOrDie(c.AdminConfig())

	// The router's namespace and ServiceAccount as deploy/base renders
	// them; the sandboxes and pods of team-a and team-b are the shared
	// cluster's (apiServer).
	base := mustRender(t, "base")
	if got := base[idNamespace].name(); got != cluster.RouterNamespace {
		t.Fatalf("deploy/base installs the router in %q, cluster.RouterNamespace is %q", got, cluster.RouterNamespace)
	}
	apply(t, c, base[idNamespace], base[idSA])
	tok, err := admin.CoreV1().ServiceAccounts(routerNS).CreateToken(ctx, "sandbox-router",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of the router's ServiceAccount: %v", err)
	}
	ids := []identity{
		{name: "user router", cfg: c.RouterConfig(), user: "router", groups: []string{"system:authenticated"}},
		{name: "service account", cfg: c.TokenConfig(tok.Status.Token), user: "system:serviceaccount:sandbox-router:sandbox-router",
			groups: []string{"system:serviceaccounts", "system:serviceaccounts:sandbox-router", "system:authenticated"}},
	}

	// Other tests of the package (and an earlier -count run) may have
	// bound the router's roles cluster-wide: unbind them first.
	unbindClusterWide(t, admin, ids)

	t.Run("namespaced", func(t *testing.T) {
		var rbac []*object
		for _, o := range mustRender(t, "overlays/namespaced") {
			if o.kind() == "Role" || o.kind() == "RoleBinding" {
				rbac = append(rbac, o)
			}
		}
		if len(rbac) != 4 {
			t.Fatalf("overlays/namespaced has %d Roles and RoleBindings, want 4 (team-a, and the lease in %s)", len(rbac), routerNS)
		}
		apply(t, c, rbac...)
		apply(t, c, userBinding("RoleBinding", "team-a", "Role", "sandbox-router"),
			userBinding("RoleBinding", routerNS, "Role", leaderElectionRole))
		for i, id := range ids {
			t.Run(id.name, func(t *testing.T) {
				waitAllowed(t, id, allowed(id.cfg, "team-a")[0])
				waitAllowed(t, id, getLease(id.cfg, routerNS))
				expect(t, id, allowed(id.cfg, "team-a"), true)
				expect(t, id, allowed(id.cfg, "team-b"), false)
				expect(t, id, allowed(id.cfg, metav1.NamespaceAll), false)
				expect(t, id, denied(id.cfg, "team-a"), false)
				expect(t, id, []probe{leaderElection(id.cfg, admin, routerNS, fmt.Sprintf("namespaced-%d", i))}, true)
				expect(t, id, leaseDenied(id.cfg, routerNS, "team-a"), false)
				expect(t, id, reviews(id.cfg), false)
				expect(t, id, extensionReads(id.cfg, "team-a"), false)
				accessMatrix(t, admin, id, grants{namespaces: map[string]bool{"team-a": true}, patch: true, leaseNS: routerNS},
					"team-a", "team-b", routerNS)
			})
		}
	})

	t.Run("cluster-wide", func(t *testing.T) {
		// deploy/rbac as the e2e tests apply it: GrantRouter binds the
		// user, the manifests bind the ServiceAccount.
		if err := c.GrantRouter(ctx); err != nil {
			t.Fatalf("GrantRouter: %v", err)
		}
		for i, id := range ids {
			t.Run(id.name, func(t *testing.T) {
				waitAllowed(t, id, allowed(id.cfg, metav1.NamespaceAll)[0])
				for _, ns := range []string{metav1.NamespaceAll, "team-a", "team-b"} {
					expect(t, id, allowed(id.cfg, ns), true)
				}
				for _, ns := range []string{"team-a", "team-b"} {
					expect(t, id, denied(id.cfg, ns), false)
					expect(t, id, leaseDenied(id.cfg, routerNS, ns), false)
				}
				expect(t, id, []probe{leaderElection(id.cfg, admin, routerNS, fmt.Sprintf("cluster-wide-%d", i))}, true)
				// GrantRouter applies deploy/rbac/access too.
				waitAllowed(t, id, reviews(id.cfg)[0])
				expect(t, id, reviews(id.cfg), true)
				// And deploy/rbac/xds: the router fleet's EndpointSlices.
				waitAllowed(t, id, probe{name: "list endpointslices", do: func(ctx context.Context) error {
					_, err := kubernetes.NewForConfigOrDie(id.cfg).DiscoveryV1().EndpointSlices(routerNS).List(ctx, metav1.ListOptions{})
					return err
				}})
				// And deploy/rbac/dashboard: the extensions API, read only.
				waitAllowed(t, id, extensionReads(id.cfg, metav1.NamespaceAll)[0])
				for _, ns := range []string{metav1.NamespaceAll, "team-a"} {
					expect(t, id, extensionReads(id.cfg, ns), true)
				}
				accessMatrix(t, admin, id, grants{namespaces: map[string]bool{"": true}, patch: true, leaseNS: routerNS, reviews: true, endpointSlicesNS: routerNS,
					extensions: map[string]bool{"": true}}, "team-a", "team-b", routerNS)
			})
		}
	})

	// Server-side apply checks every field against the API server's
	// schema, so a misspelt field fails here, as the control shows.
	t.Run("every kustomization applies", func(t *testing.T) {
		for _, dir := range kustomizations(t) {
			objs, err := render(dir)
			if err != nil {
				t.Errorf("render %s: %v", dir, err)
				continue
			}
			if err := applyErr(t, c, objs...); err != nil {
				t.Errorf("apply %s: %v", dir, err)
			}
		}
		bad := mustRender(t, "base")[idService]
		bad.m["spec"].(map[string]any)["selectr"] = map[string]any{"x": "y"}
		if err := applyErr(t, c, bad); err == nil || !strings.Contains(err.Error(), "selectr") {
			t.Errorf("applying a Service with a misspelt field: err %v, want it refused", err)
		}
	})
}

func testPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"agents.x-k8s.io/sandbox-name-hash": "0123abcd"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/sandbox"}}},
	}
}

// userBinding binds the router's role roleName to the test cluster's user
// "router" in place of the ServiceAccount.
func userBinding(kind, namespace, roleKind, roleName string) *object {
	md := map[string]any{"name": roleName + "-e2e-user"}
	if namespace != "" {
		md["namespace"] = namespace
	}
	return &object{source: "test " + kind, m: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": md,
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": roleKind, "name": roleName},
		"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "router"}},
	}}
}

// applyErr server-side applies objects as admin through the harness's
// ApplyManifests (one JSON file each).
func applyErr(t *testing.T, c *cluster.Cluster, objs ...*object) error {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i, o := range objs {
		data, err := json.Marshal(o.m)
		if err != nil {
			t.Fatalf("%s: %v", o.source, err)
		}
		p := filepath.Join(dir, fmt.Sprintf("%03d.json", i))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return cluster.ApplyManifests(t.Context(), c.AdminConfig(), paths...)
}

func apply(t *testing.T, c *cluster.Cluster, objs ...*object) {
	t.Helper()
	if err := applyErr(t, c, objs...); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// probe is one API request the router might make.
type probe struct {
	name string
	do   func(ctx context.Context) error
}

// allowed are the requests the router makes in ns (all namespaces when
// empty): reads, and (in a namespace) the activator's patches.
func allowed(cfg *rest.Config, ns string) []probe {
	if ns == "" {
		return reads(cfg, ns)
	}
	return append(reads(cfg, ns), patches(cfg, ns)...)
}

// reads are the resolver's requests in ns (all namespaces when empty):
// lists and watches of both Sandbox versions and of the labelled pods,
// and (in a namespace) gets.
func reads(cfg *rest.Config, ns string) []probe {
	dyn := dynamic.NewForConfigOrDie(cfg)
	cs := kubernetes.NewForConfigOrDie(cfg)
	where := ns
	if where == "" {
		where = "all namespaces"
	}
	podSel := metav1.ListOptions{LabelSelector: "agents.x-k8s.io/sandbox-name-hash"}
	ps := []probe{
		{"list sandboxes v1beta1 in " + where, func(ctx context.Context) error {
			_, err := dyn.Resource(sandboxesV1beta1).Namespace(ns).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"list sandboxes v1alpha1 in " + where, func(ctx context.Context) error {
			_, err := dyn.Resource(sandboxesV1alpha1).Namespace(ns).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"watch sandboxes in " + where, func(ctx context.Context) error {
			w, err := dyn.Resource(sandboxesV1beta1).Namespace(ns).Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"list labelled pods in " + where, func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods(ns).List(ctx, podSel)
			return err
		}},
		{"watch labelled pods in " + where, func(ctx context.Context) error {
			w, err := cs.CoreV1().Pods(ns).Watch(ctx, podSel)
			if err == nil {
				w.Stop()
			}
			return err
		}},
	}
	if ns == "" {
		return ps
	}
	return append(ps,
		probe{"get sandbox in " + ns, func(ctx context.Context) error {
			_, err := dyn.Resource(sandboxesV1beta1).Namespace(ns).Get(ctx, "s", metav1.GetOptions{})
			return err
		}},
		probe{"get pod in " + ns, func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods(ns).Get(ctx, "p", metav1.GetOptions{})
			return err
		}},
	)
}

// patches are the activator's merge patches of sandbox "s" in ns: suspend
// and resume through either version and the activity annotation.
func patches(cfg *rest.Config, ns string) []probe {
	dyn := dynamic.NewForConfigOrDie(cfg)
	patch := func(what string, gvr schema.GroupVersionResource, body string) probe {
		return probe{what + " in " + ns, func(ctx context.Context) error {
			_, err := dyn.Resource(gvr).Namespace(ns).Patch(ctx, "s", types.MergePatchType, []byte(body), metav1.PatchOptions{})
			return err
		}}
	}
	return []probe{
		patch("suspend sandbox (v1beta1 merge patch)", sandboxesV1beta1, `{"spec":{"operatingMode":"Suspended"}}`),
		patch("resume sandbox (v1beta1 merge patch)", sandboxesV1beta1, `{"spec":{"operatingMode":"Running"}}`),
		patch("suspend sandbox (v1alpha1 merge patch)", sandboxesV1alpha1, `{"spec":{"replicas":0}}`),
		patch("resume sandbox (v1alpha1 merge patch)", sandboxesV1alpha1, `{"spec":{"replicas":1}}`),
		patch("annotate sandbox activity", sandboxesV1beta1,
			`{"metadata":{"annotations":{"sandbox-router.dev/last-activity":"`+time.Now().UTC().Format(time.RFC3339)+`"}}}`),
	}
}

// reviews are the requests of authz modes tokenreview and kubernetes: a
// TokenReview and a SubjectAccessReview (their answers do not matter).
func reviews(cfg *rest.Config) []probe {
	cs := kubernetes.NewForConfigOrDie(cfg)
	return []probe{
		{"create TokenReview", func(ctx context.Context) error {
			_, err := cs.AuthenticationV1().TokenReviews().Create(ctx,
				&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "not-a-token"}}, metav1.CreateOptions{})
			return err
		}},
		{"create SubjectAccessReview", func(ctx context.Context) error {
			_, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{User: "someone", ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: "team-a", Verb: "create", Group: "agents.x-k8s.io", Resource: "sandboxes", Subresource: "proxy", Name: "s"}}},
				metav1.CreateOptions{})
			return err
		}},
	}
}

// extensionReads are the dashboard catalog's requests in ns (all
// namespaces when empty): a list and a watch of each extension kind.
func extensionReads(cfg *rest.Config, ns string) []probe {
	dyn := dynamic.NewForConfigOrDie(cfg)
	where := ns
	if where == "" {
		where = "all namespaces"
	}
	var ps []probe
	for _, r := range extensionResources {
		res := dyn.Resource(schema.GroupVersionResource{Group: extensionsGroup, Version: "v1beta1", Resource: r}).Namespace(ns)
		ps = append(ps,
			probe{"list " + r + " in " + where, func(ctx context.Context) error {
				_, err := res.List(ctx, metav1.ListOptions{})
				return err
			}},
			probe{"watch " + r + " in " + where, func(ctx context.Context) error {
				w, err := res.Watch(ctx, metav1.ListOptions{})
				if err == nil {
					w.Stop()
				}
				return err
			}})
	}
	return ps
}

// unbindClusterWide deletes every ClusterRoleBinding that binds one of
// ids (by user name) and waits until none of them may list sandboxes in
// all namespaces or create TokenReviews any more.
func unbindClusterWide(t *testing.T, admin kubernetes.Interface, ids []identity) {
	t.Helper()
	crbs, err := admin.RbacV1().ClusterRoleBindings().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, crb := range crbs.Items {
		for _, s := range crb.Subjects {
			name := s.Name
			if s.Kind == "ServiceAccount" {
				name = "system:serviceaccount:" + s.Namespace + ":" + s.Name
			}
			if slices.ContainsFunc(ids, func(id identity) bool { return id.user == name }) {
				if err := admin.RbacV1().ClusterRoleBindings().Delete(t.Context(), crb.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	// And the xDS server's EndpointSlice grant in the router's namespace
	// (GrantRouter and applied kustomizations bind it).
	for _, name := range []string{"sandbox-router-xds", "sandbox-router-xds-e2e-user"} {
		if err := admin.RbacV1().RoleBindings(routerNS).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		for _, a := range []authorizationv1.ResourceAttributes{
			{Verb: "list", Group: "agents.x-k8s.io", Resource: "sandboxes"},
			{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"},
			{Namespace: routerNS, Verb: "watch", Group: "discovery.k8s.io", Resource: "endpointslices"},
			{Verb: "list", Group: extensionsGroup, Resource: "sandboxtemplates"},
		} {
			waitSAR(t, admin, id, a, false)
		}
	}
}

// waitSAR waits until a SubjectAccessReview of attrs for id answers want.
func waitSAR(t *testing.T, admin kubernetes.Interface, id identity, attrs authorizationv1.ResourceAttributes, want bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), rbacWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: id.user, Groups: id.groups, ResourceAttributes: &attrs}}
		got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err == nil && got.Status.Allowed == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %s %s.%s in %q: still not allowed=%v (err %v)", id.name, attrs.Verb, attrs.Resource, attrs.Group, attrs.Namespace, want, err)
		case <-tick.C:
		}
	}
}

// denied are requests the router must never be allowed, in ns.
func denied(cfg *rest.Config, ns string) []probe {
	dyn := dynamic.NewForConfigOrDie(cfg)
	cs := kubernetes.NewForConfigOrDie(cfg)
	sandboxes := dyn.Resource(sandboxesV1beta1).Namespace(ns)
	newSandbox := func(name string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
			"metadata": map[string]any{"name": name}, "spec": map[string]any{"operatingMode": "Running"}}}
	}
	return []probe{
		{"get secret in " + ns, func(ctx context.Context) error {
			_, err := cs.CoreV1().Secrets(ns).Get(ctx, "any", metav1.GetOptions{})
			return err
		}},
		{"list secrets in " + ns, func(ctx context.Context) error {
			_, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"list configmaps in " + ns, func(ctx context.Context) error {
			_, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"patch sandbox status in " + ns, func(ctx context.Context) error {
			_, err := sandboxes.Patch(ctx, "s", types.MergePatchType, []byte(`{"status":{"podIPs":["10.0.0.1"]}}`), metav1.PatchOptions{}, "status")
			return err
		}},
		{"update sandbox (PUT) in " + ns, func(ctx context.Context) error {
			_, err := sandboxes.Update(ctx, newSandbox("s"), metav1.UpdateOptions{})
			return err
		}},
		{"update sandbox status (PUT) in " + ns, func(ctx context.Context) error {
			_, err := sandboxes.UpdateStatus(ctx, newSandbox("s"), metav1.UpdateOptions{})
			return err
		}},
		{"create sandbox in " + ns, func(ctx context.Context) error {
			_, err := sandboxes.Create(ctx, newSandbox("new"), metav1.CreateOptions{})
			return err
		}},
		{"delete sandbox in " + ns, func(ctx context.Context) error {
			return sandboxes.Delete(ctx, "s", metav1.DeleteOptions{})
		}},
		{"create pod in " + ns, func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods(ns).Create(ctx, testPod("new"), metav1.CreateOptions{})
			return err
		}},
		{"patch pod in " + ns, func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods(ns).Patch(ctx, "p", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
			return err
		}},
		{"delete pod in " + ns, func(ctx context.Context) error {
			return cs.CoreV1().Pods(ns).Delete(ctx, "p", metav1.DeleteOptions{})
		}},
	}
}

// getLease gets a lease that does not exist in ns: NotFound when allowed.
func getLease(cfg *rest.Config, ns string) probe {
	cs := kubernetes.NewForConfigOrDie(cfg)
	return probe{"get lease in " + ns, func(ctx context.Context) error {
		_, err := cs.CoordinationV1().Leases(ns).Get(ctx, "no-such-lease", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}}
}

// leaderElection runs client-go's leader election with a LeaseLock in the
// router's namespace, as the router's idle suspender does: it creates the
// lease, becomes the leader, and on cancel releases the lease (an update),
// which admin then sees. name makes the lease and identity unique.
func leaderElection(cfg *rest.Config, admin kubernetes.Interface, routerNS, name string) probe {
	cs := kubernetes.NewForConfigOrDie(cfg)
	lease := "e2e-election-" + name
	identity := "e2e-" + name
	return probe{"leader election with a LeaseLock in " + routerNS, func(ctx context.Context) error {
		lock := &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: routerNS, Name: lease},
			Client:     cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
		}
		ctx, cancel := context.WithTimeout(ctx, rbacWait)
		defer cancel()
		leading := make(chan struct{})
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     time.Second,
			ReleaseOnCancel: true,
			Name:            lease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { close(leading) },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return err
		}
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		done := make(chan struct{})
		go func() {
			defer close(done)
			le.Run(runCtx)
		}()
		select {
		case <-leading:
		case <-ctx.Done():
			<-done // runCtx ended with ctx
			// The election retries a forbidden get or create quietly:
			// show what the API server says.
			if _, err := cs.CoordinationV1().Leases(routerNS).Get(context.WithoutCancel(ctx), lease, metav1.GetOptions{}); err != nil {
				return err
			}
			return fmt.Errorf("not the leader of %s/%s: %w", routerNS, lease, ctx.Err())
		}
		l, err := admin.CoordinationV1().Leases(routerNS).Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if h := l.Spec.HolderIdentity; h == nil || *h != identity {
			return fmt.Errorf("lease %s/%s holder %v while leading, want %s", routerNS, lease, h, identity)
		}
		stop()
		<-done // Run returns after the release
		l, err = admin.CoordinationV1().Leases(routerNS).Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if h := l.Spec.HolderIdentity; h != nil && *h != "" {
			return fmt.Errorf("lease %s/%s still held by %s after release: the release (an update) failed", routerNS, lease, *h)
		}
		return nil
	}}
}

// leaseDenied are the lease requests the router must not be allowed: any
// lease verb outside its namespace, and in it anything but get, create
// and update.
func leaseDenied(cfg *rest.Config, routerNS, otherNS string) []probe {
	cs := kubernetes.NewForConfigOrDie(cfg)
	newLease := func(name string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}}
	}
	return []probe{
		{"get lease in " + otherNS, func(ctx context.Context) error {
			_, err := cs.CoordinationV1().Leases(otherNS).Get(ctx, "any", metav1.GetOptions{})
			return err
		}},
		{"create lease in " + otherNS, func(ctx context.Context) error {
			_, err := cs.CoordinationV1().Leases(otherNS).Create(ctx, newLease("x"), metav1.CreateOptions{})
			return err
		}},
		{"update lease in " + otherNS, func(ctx context.Context) error {
			_, err := cs.CoordinationV1().Leases(otherNS).Update(ctx, newLease("x"), metav1.UpdateOptions{})
			return err
		}},
		{"list leases in " + routerNS, func(ctx context.Context) error {
			_, err := cs.CoordinationV1().Leases(routerNS).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"watch leases in " + routerNS, func(ctx context.Context) error {
			w, err := cs.CoordinationV1().Leases(routerNS).Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"patch lease in " + routerNS, func(ctx context.Context) error {
			_, err := cs.CoordinationV1().Leases(routerNS).Patch(ctx, "x", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{})
			return err
		}},
		{"delete lease in " + routerNS, func(ctx context.Context) error {
			return cs.CoordinationV1().Leases(routerNS).Delete(ctx, "x", metav1.DeleteOptions{})
		}},
		{"list leases in all namespaces", func(ctx context.Context) error {
			_, err := cs.CoordinationV1().Leases("").List(ctx, metav1.ListOptions{})
			return err
		}},
	}
}

// expect runs the probes as id: each must succeed (allowed) or be
// refused with 403 Forbidden.
func expect(t *testing.T, id identity, ps []probe, allowed bool) {
	t.Helper()
	for _, p := range ps {
		err := p.do(t.Context())
		switch {
		case allowed && err != nil:
			t.Errorf("%s: %s: %v, want allowed", id.name, p.name, err)
		case !allowed && !apierrors.IsForbidden(err):
			t.Errorf("%s: %s: err %v, want 403 Forbidden", id.name, p.name, err)
		}
	}
}

// waitAllowed waits until p succeeds: a binding reaches the authorizer's
// cache shortly after it is written.
func waitAllowed(t *testing.T, id identity, p probe) {
	t.Helper()
	deadline := time.Now().Add(rbacWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := p.do(t.Context())
		if err == nil {
			return
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			t.Fatalf("%s: %s: %v (waited for the binding to take effect)", id.name, p.name, err)
		}
		<-tick.C
	}
}

// grants is what an identity of the router may do, and nothing more.
type grants struct {
	// namespaces where it reads sandboxes and pods ("" = all of them).
	namespaces map[string]bool
	// patch: it may also patch sandboxes there (the activator).
	patch bool
	// leaseNS is the namespace of its leader-election Lease; "" = none.
	leaseNS string
	// reviews: it may create TokenReviews and SubjectAccessReviews.
	reviews bool
	// endpointSlicesNS is where it lists and watches EndpointSlices (the
	// xDS server's router fleet); "" = nowhere.
	endpointSlicesNS string
	// extensions are the namespaces where it gets, lists and watches
	// SandboxTemplates, SandboxWarmPools and SandboxClaims (the
	// dashboard's catalog; "" = all of them).
	extensions map[string]bool
}

// accessMatrix asks the API server (SubjectAccessReview) about every verb
// on the resources a router could be tempted to touch, cluster-wide and in
// each of namespaces. Only g may be allowed: get, list and watch (and patch
// with g.patch) of sandboxes (not their status) and get, list and watch of
// pods in g.namespaces; get, create and update of leases in g.leaseNS;
// create of TokenReviews and SubjectAccessReviews with g.reviews; list and
// watch of EndpointSlices in g.endpointSlicesNS; get, list and watch of
// the extensions API's kinds in g.extensions.
func accessMatrix(t *testing.T, admin kubernetes.Interface, id identity, g grants, namespaces ...string) {
	t.Helper()
	type res struct{ group, resource, sub string }
	resources := []res{
		{"agents.x-k8s.io", "sandboxes", ""}, {"agents.x-k8s.io", "sandboxes", "status"}, {"agents.x-k8s.io", "sandboxes", "proxy"},
		{"", "pods", ""}, {"", "pods", "status"}, {"", "pods", "log"}, {"", "pods", "exec"}, {"", "pods", "portforward"},
		{"", "secrets", ""}, {"", "configmaps", ""}, {"", "services", ""}, {"", "events", ""},
		{"", "serviceaccounts", "token"}, {"coordination.k8s.io", "leases", ""}, {"rbac.authorization.k8s.io", "rolebindings", ""},
		{"authentication.k8s.io", "tokenreviews", ""}, {"authorization.k8s.io", "subjectaccessreviews", ""},
		{"authorization.k8s.io", "localsubjectaccessreviews", ""},
		{"discovery.k8s.io", "endpointslices", ""},
		{extensionsGroup, "sandboxtemplates", ""}, {extensionsGroup, "sandboxwarmpools", ""}, {extensionsGroup, "sandboxclaims", ""},
	}
	verbs := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	type query struct {
		ns, verb string
		r        res
	}
	sandboxVerbs := []string{"get", "list", "watch"}
	if g.patch {
		sandboxVerbs = append(sandboxVerbs, "patch")
	}
	want := func(q query) bool {
		if q.r.sub != "" {
			return false
		}
		inGranted := g.namespaces[q.ns] || g.namespaces[""]
		switch q.r {
		case res{"agents.x-k8s.io", "sandboxes", ""}:
			return inGranted && slices.Contains(sandboxVerbs, q.verb)
		case res{"", "pods", ""}:
			return inGranted && slices.Contains([]string{"get", "list", "watch"}, q.verb)
		case res{"coordination.k8s.io", "leases", ""}:
			return g.leaseNS != "" && q.ns == g.leaseNS && slices.Contains([]string{"get", "create", "update"}, q.verb)
		case res{"discovery.k8s.io", "endpointslices", ""}:
			return g.endpointSlicesNS != "" && q.ns == g.endpointSlicesNS && slices.Contains([]string{"list", "watch"}, q.verb)
		case res{extensionsGroup, "sandboxtemplates", ""}, res{extensionsGroup, "sandboxwarmpools", ""}, res{extensionsGroup, "sandboxclaims", ""}:
			return (g.extensions[q.ns] || g.extensions[""]) && slices.Contains([]string{"get", "list", "watch"}, q.verb)
		case res{"authentication.k8s.io", "tokenreviews", ""}, res{"authorization.k8s.io", "subjectaccessreviews", ""}:
			// Cluster-scoped: a ClusterRoleBinding allows them whatever
			// namespace the review names.
			return g.reviews && q.verb == "create"
		}
		return false
	}
	var qs []query
	for _, ns := range append([]string{""}, namespaces...) {
		for _, r := range resources {
			for _, v := range verbs {
				qs = append(qs, query{ns, v, r})
			}
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	next := make(chan query)
	for range 8 {
		wg.Go(func() {
			for q := range next {
				sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
					User: id.user, Groups: id.groups,
					ResourceAttributes: &authorizationv1.ResourceAttributes{
						Namespace: q.ns, Verb: q.verb, Group: q.r.group, Resource: q.r.resource, Subresource: q.r.sub,
					},
				}}
				got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), sar, metav1.CreateOptions{})
				want := want(q)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, fmt.Sprintf("SubjectAccessReview: %v", err))
				case got.Status.Allowed != want:
					where := q.ns
					if where == "" {
						where = "cluster-wide"
					}
					r := q.r.resource
					if q.r.sub != "" {
						r += "/" + q.r.sub
					}
					errs = append(errs, fmt.Sprintf("%s %s.%s %s: allowed %s, want %s", q.verb, r, q.r.group, where,
						strconv.FormatBool(got.Status.Allowed), strconv.FormatBool(want)))
				}
				mu.Unlock()
			}
		})
	}
	for _, q := range qs {
		next <- q
	}
	close(next)
	wg.Wait()
	for _, e := range errs {
		t.Errorf("%s: %s", id.name, e)
	}
}
