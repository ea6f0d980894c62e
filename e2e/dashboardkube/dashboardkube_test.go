package dashboardkube

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sandbox-router/sandbox-router/dashboard/kube"
	"github.com/sandbox-router/sandbox-router/e2e/cluster"
)

const (
	teamA, teamB, teamC = "team-a", "team-b", "team-c"
	// waitTimeout bounds every wait for a state to show.
	waitTimeout = 60 * time.Second
	// dashboardRole is deploy/rbac/dashboard's ClusterRole.
	dashboardRole = "sandbox-router-dashboard"
)

var (
	templateGVR = schema.GroupVersionResource{Group: kube.Group, Version: "v1beta1", Resource: "sandboxtemplates"}
	poolGVR     = schema.GroupVersionResource{Group: kube.Group, Version: "v1beta1", Resource: "sandboxwarmpools"}
	claimGVR    = schema.GroupVersionResource{Group: kube.Group, Version: "v1beta1", Resource: "sandboxclaims"}
)

// crdFiles are the extension CRDs of deploy/crds.
var crdFiles = map[schema.GroupVersionResource]string{
	templateGVR: "extensions.agents.x-k8s.io_sandboxtemplates.yaml",
	poolGVR:     "extensions.agents.x-k8s.io_sandboxwarmpools.yaml",
	claimGVR:    "extensions.agents.x-k8s.io_sandboxclaims.yaml",
}

type env struct {
	c   *cluster.Cluster
	cs  kubernetes.Interface
	dyn dynamic.Interface
	dir string // deploy/crds
}

// start runs a catalog until the test ends and returns it.
func start(t *testing.T, opts kube.Options) *kube.Catalog {
	t.Helper()
	opts.DiscoveryRetry, opts.DiscoveryRetryMax = 50*time.Millisecond, time.Second
	cat, err := kube.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cat.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	return cat
}

// waitCatalog waits, on the catalog's change signals only (no polling),
// until cond holds, and fails the test at the deadline with what was seen
// last. The test is the catalog's only reader of Changes.
func waitCatalog(t *testing.T, cat *kube.Catalog, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		ok, seen := cond()
		if ok {
			return
		}
		select {
		case <-cat.Changes():
		case <-deadline.C:
			t.Fatalf("waiting for %s: still %s", what, seen)
		}
	}
}

// kindsAre waits until the catalog reports the kinds served in want
// (kind -> version, "" for absent), all synced and without error.
func kindsAre(t *testing.T, cat *kube.Catalog, want map[kube.Kind]string) {
	t.Helper()
	waitCatalog(t, cat, fmt.Sprintf("kinds %v", want), func() (bool, string) {
		ks := cat.Kinds()
		ok := cat.Synced()
		for _, k := range ks {
			if k.Version != want[k.Kind] || (k.Served() && !k.Synced) || k.Error != "" {
				ok = false
			}
		}
		return ok, fmt.Sprintf("synced=%v %+v", cat.Synced(), ks)
	})
}

func TestCatalog(t *testing.T) {
	c := cluster.Start(t)
	ctx := t.Context()
	dir, err := cluster.CRDDir()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{c: c, cs: kubernetes.NewForConfigOrDie(c.AdminConfig()), dyn: dynamic.NewForConfigOrDie(c.AdminConfig()), dir: dir}
	if err := cluster.CreateNamespaces(ctx, e.cs, teamA, teamB, teamC); err != nil {
		t.Fatal(err)
	}
	all := map[kube.Kind]string{kube.KindTemplate: "v1beta1", kube.KindWarmPool: "v1beta1", kube.KindClaim: "v1beta1"}

	// No extension CRD yet: the catalog syncs with every kind absent.
	admin := start(t, kube.Options{Config: c.AdminConfig(), Log: logger(t, "admin")})
	kindsAre(t, admin, map[kube.Kind]string{})
	if n := len(admin.Templates("")) + len(admin.WarmPools("")) + len(admin.Claims("")); n != 0 {
		t.Errorf("%d records without CRDs", n)
	}

	// The CRDs arrive: every kind is watched, through discovery retries.
	e.applyCRDs(t, templateGVR, poolGVR, claimGVR)
	kindsAre(t, admin, all)

	// The router's identity, bound to the dashboard's ClusterRole in
	// team-a and team-b only: a catalog of those namespaces syncs, one of
	// every namespace is refused and says so.
	if err := cluster.ApplyManifests(ctx, c.AdminConfig(), filepath.Join(dir, "..", "rbac", "dashboard")); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{teamA, teamB} {
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "dashboard-router", Namespace: ns},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "router"}},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: dashboardRole}}
		if _, err := e.cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, res := range []string{"sandboxtemplates", "sandboxwarmpools", "sandboxclaims"} {
			e.waitAllowed(t, "router", ns, res)
		}
	}
	scoped := start(t, kube.Options{Config: c.RouterConfig(), Namespaces: []string{teamB, teamA}, Log: logger(t, "scoped")})
	kindsAre(t, scoped, all)
	refused := start(t, kube.Options{Config: c.RouterConfig(), Log: logger(t, "refused")})
	waitCatalog(t, refused, "a Forbidden error for every kind", func() (bool, string) {
		ks := refused.Kinds()
		ok := !refused.Synced()
		for _, k := range ks {
			ok = ok && k.Served() && !k.Synced && strings.Contains(k.Error, "forbidden")
		}
		return ok, fmt.Sprintf("synced=%v %+v", refused.Synced(), ks)
	})

	// Objects of every kind in three namespaces, made by the admin.
	for _, ns := range []string{teamA, teamB, teamC} {
		e.create(t, templateGVR, ns, "python", map[string]any{"podTemplate": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "runtime", "image": "registry.example/python:3.13",
				"ports": []any{map[string]any{"name": "http", "containerPort": 8888}}}},
		}}})
	}
	e.create(t, poolGVR, teamA, "python-pool", map[string]any{"sandboxTemplateRef": map[string]any{"name": "python"}, "replicas": 3})
	e.create(t, poolGVR, teamB, "defaults", map[string]any{"sandboxTemplateRef": map[string]any{"name": "python"}}) // replicas: the CRD's default 1
	e.create(t, claimGVR, teamA, "mine", map[string]any{"warmPoolRef": map[string]any{"name": "python-pool"}})
	e.create(t, claimGVR, teamC, "theirs", map[string]any{"warmPoolRef": map[string]any{"name": "elsewhere"}})
	// The CRD refuses a claim of no pool.
	if _, err := e.dyn.Resource(claimGVR).Namespace(teamA).Create(ctx, object(claimGVR, teamA, "bad", map[string]any{}), metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("a claim without spec.warmPoolRef: err %v, want Invalid", err)
	}

	python := []kube.Container{{Name: "runtime", Image: "registry.example/python:3.13", Ports: []kube.Port{{Name: "http", Number: 8888, Protocol: "TCP"}}}}
	waitCatalog(t, admin, "every object", func() (bool, string) {
		got := [3][]string{templateKeys(admin.Templates("")), poolKeys(admin.WarmPools("")), claimKeys(admin.Claims(""))}
		want := [3][]string{{"team-a/python", "team-b/python", "team-c/python"}, {"team-a/python-pool", "team-b/defaults"}, {"team-a/mine", "team-c/theirs"}}
		return reflect.DeepEqual(got, want), fmt.Sprint(got)
	})
	waitCatalog(t, scoped, "team-a and team-b only", func() (bool, string) {
		got := [3][]string{templateKeys(scoped.Templates("")), poolKeys(scoped.WarmPools("")), claimKeys(scoped.Claims(""))}
		want := [3][]string{{"team-a/python", "team-b/python"}, {"team-a/python-pool", "team-b/defaults"}, {"team-a/mine"}}
		return reflect.DeepEqual(got, want), fmt.Sprint(got)
	})
	if got := scoped.Templates(teamC); len(got) != 0 {
		t.Errorf("the scoped catalog has templates of team-c: %+v", got)
	}
	tmpl := admin.Templates(teamB)
	if len(tmpl) != 1 || !reflect.DeepEqual(tmpl[0].Containers, python) || tmpl[0].Created.IsZero() {
		t.Errorf("team-b templates %+v", tmpl)
	}
	pools := admin.WarmPools("")
	if p := pools[0]; p.Template != "python" || p.Desired != 3 || p.Ready != 0 || p.Replicas != 0 {
		t.Errorf("pool %+v", p)
	}
	if p := pools[1]; p.Desired != 1 {
		t.Errorf("pool with the default replicas %+v", p)
	}
	if cl := admin.Claims(teamA); len(cl) != 1 || cl[0].WarmPool != "python-pool" || cl[0].Template != "python" || cl[0].Ready || cl[0].Sandbox != "" {
		t.Errorf("claims of team-a %+v", cl)
	}

	// The user "router" bound cluster-wide: the refused catalog recovers.
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "dashboard-router"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "router"}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: dashboardRole}}
	if _, err := e.cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kindsAre(t, refused, all)
	if got := templateKeys(refused.Templates("")); len(got) != 3 {
		t.Errorf("the recovered catalog's templates: %v", got)
	}

	// Changes: the pool fills, the claim is bound and ready, the
	// template's image changes.
	e.patchStatus(t, poolGVR, teamA, "python-pool", `{"status":{"replicas":3,"readyReplicas":2}}`)
	e.patchStatus(t, claimGVR, teamA, "mine", `{"status":{"sandbox":{"name":"python-pool-abc12"},"conditions":[`+
		`{"type":"Ready","status":"True","reason":"SandboxReady","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`)
	if _, err := e.dyn.Resource(templateGVR).Namespace(teamA).Patch(ctx, "python", types.MergePatchType,
		[]byte(`{"spec":{"podTemplate":{"spec":{"containers":[{"name":"runtime","image":"registry.example/python:3.14"}]}}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, cat := range map[string]*kube.Catalog{"admin": admin, "scoped": scoped} {
		waitCatalog(t, cat, name+": the changes", func() (bool, string) {
			p, cl, tm := cat.WarmPools(teamA), cat.Claims(teamA), cat.Templates(teamA)
			ok := len(p) == 1 && p[0].Ready == 2 && p[0].Replicas == 3 &&
				len(cl) == 1 && cl[0].Ready && cl[0].Reason == "SandboxReady" && cl[0].Sandbox == "python-pool-abc12" &&
				len(tm) == 1 && len(tm[0].Containers) == 1 && tm[0].Containers[0].Image == "registry.example/python:3.14" && tm[0].Containers[0].Ports == nil
			return ok, fmt.Sprintf("%+v %+v %+v", p, cl, tm)
		})
	}

	// Deletes.
	e.delete(t, claimGVR, teamA, "mine")
	e.delete(t, templateGVR, teamB, "python")
	waitCatalog(t, admin, "the deletes", func() (bool, string) {
		got := [2][]string{templateKeys(admin.Templates("")), claimKeys(admin.Claims(""))}
		return reflect.DeepEqual(got, [2][]string{{"team-a/python", "team-c/python"}, {"team-c/theirs"}}), fmt.Sprint(got)
	})

	// The claims CRD deleted: the kind is dropped from every catalog
	// (its list answers NotFound, so discovery is asked again); applied
	// again, it is back, empty.
	if err := e.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).
		Delete(ctx, claimGVR.Resource+"."+claimGVR.Group, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	noClaims := map[kube.Kind]string{kube.KindTemplate: "v1beta1", kube.KindWarmPool: "v1beta1"}
	kindsAre(t, admin, noClaims)
	if got := admin.Claims(""); len(got) != 0 {
		t.Errorf("claims after their CRD went: %+v", got)
	}
	kindsAre(t, scoped, noClaims)
	e.applyCRDs(t, claimGVR)
	kindsAre(t, admin, all)
	e.create(t, claimGVR, teamC, "again", map[string]any{"warmPoolRef": map[string]any{"name": "elsewhere"}})
	waitCatalog(t, admin, "the new claim", func() (bool, string) {
		got := claimKeys(admin.Claims(""))
		return reflect.DeepEqual(got, []string{"team-c/again"}), fmt.Sprint(got)
	})
	kindsAre(t, scoped, all)
	if got := scoped.Claims(""); len(got) != 0 {
		t.Errorf("the scoped catalog has claims: %+v", got)
	}
}

func (e *env) applyCRDs(t *testing.T, gvrs ...schema.GroupVersionResource) {
	t.Helper()
	var paths []string
	for _, g := range gvrs {
		paths = append(paths, filepath.Join(e.dir, crdFiles[g]))
	}
	if err := cluster.ApplyManifests(t.Context(), e.c.AdminConfig(), paths...); err != nil {
		t.Fatal(err)
	}
}

func object(gvr schema.GroupVersionResource, ns, name string, spec map[string]any) *unstructured.Unstructured {
	kind := map[string]string{"sandboxtemplates": "SandboxTemplate", "sandboxwarmpools": "SandboxWarmPool", "sandboxclaims": "SandboxClaim"}[gvr.Resource]
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.GroupVersion().String(), "kind": kind,
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     spec,
	}}
}

func (e *env) create(t *testing.T, gvr schema.GroupVersionResource, ns, name string, spec map[string]any) {
	t.Helper()
	if _, err := e.dyn.Resource(gvr).Namespace(ns).Create(t.Context(), object(gvr, ns, name, spec), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s %s/%s: %v", gvr.Resource, ns, name, err)
	}
}

func (e *env) delete(t *testing.T, gvr schema.GroupVersionResource, ns, name string) {
	t.Helper()
	if err := e.dyn.Resource(gvr).Namespace(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete %s %s/%s: %v", gvr.Resource, ns, name, err)
	}
}

func (e *env) patchStatus(t *testing.T, gvr schema.GroupVersionResource, ns, name, patch string) {
	t.Helper()
	if _, err := e.dyn.Resource(gvr).Namespace(ns).Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("patch status of %s %s/%s: %v", gvr.Resource, ns, name, err)
	}
}

// waitAllowed waits until a SubjectAccessReview lets user list and watch
// resource in ns (a new binding takes effect a moment after it is
// written).
func (e *env) waitAllowed(t *testing.T, user, ns, resource string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	for _, verb := range []string{"list", "watch"} {
		attrs := authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: kube.Group, Resource: resource}
		if err := cluster.WaitAllowed(ctx, e.cs, user, []string{"system:authenticated"}, attrs, true); err != nil {
			t.Fatal(err)
		}
	}
}

func templateKeys(s []kube.Template) []string {
	out := []string{}
	for _, x := range s {
		out = append(out, x.Namespace+"/"+x.Name)
	}
	return out
}

func poolKeys(s []kube.WarmPool) []string {
	out := []string{}
	for _, x := range s {
		out = append(out, x.Namespace+"/"+x.Name)
	}
	return out
}

func claimKeys(s []kube.Claim) []string {
	out := []string{}
	for _, x := range s {
		out = append(out, x.Namespace+"/"+x.Name)
	}
	return out
}
