package dashboard

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sandbox-router/sandbox-router/dashboard"
	extkube "github.com/sandbox-router/sandbox-router/dashboard/kube"
)

var (
	templateGVR = schema.GroupVersionResource{Group: extkube.Group, Version: "v1beta1", Resource: "sandboxtemplates"}
	poolGVR     = schema.GroupVersionResource{Group: extkube.Group, Version: "v1beta1", Resource: "sandboxwarmpools"}
	claimGVR    = schema.GroupVersionResource{Group: extkube.Group, Version: "v1beta1", Resource: "sandboxclaims"}
)

// catalog runs a catalog of the extensions API as the router (whose
// identity GrantRouter bound to deploy/rbac/dashboard's ClusterRole) until
// the test ends. Each dashboard gets its own: Changes has one reader.
func (e *env) catalog(t *testing.T) *extkube.Catalog {
	t.Helper()
	cat, err := extkube.New(extkube.Options{Config: e.c.RouterConfig(), DiscoveryRetry: 50 * time.Millisecond, DiscoveryRetryMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cat.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return cat
}

// createExt creates an object of the extensions API as the admin.
func (e *env) createExt(t *testing.T, gvr schema.GroupVersionResource, kind, ns, name string, spec map[string]any) {
	t.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.GroupVersion().String(), "kind": kind,
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     spec,
	}}
	if _, err := e.dyn.Resource(gvr).Namespace(ns).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s %s/%s: %v", kind, ns, name, err)
	}
}

// deleteExts deletes every template, warm pool and claim in the teams'
// namespaces, as the admin.
func (e *env) deleteExts(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, gvr := range []schema.GroupVersionResource{claimGVR, poolGVR, templateGVR} {
		for _, ns := range []string{teamA, teamB} {
			if err := e.dyn.Resource(gvr).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
				t.Errorf("delete %s in %s: %v", gvr.Resource, ns, err)
			}
		}
	}
}

func (e *env) patchExtStatus(t *testing.T, gvr schema.GroupVersionResource, ns, name, patch string) {
	t.Helper()
	if _, err := e.dyn.Resource(gvr).Namespace(ns).Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("patch status of %s %s/%s: %v", gvr.Resource, ns, name, err)
	}
}

// jsCells reads the table's rows as their cells' text.
const jsCells = `Array.from(document.querySelectorAll('#rows tr')).map(tr => Array.from(tr.cells).map(td => td.textContent))`

// TestExtensionViews: templates, warm pools and claims made through the
// API server show on their pages and the overview, follow changes on the
// open page without a reload, and a viewer hiding a namespace sees none
// of its objects.
func TestExtensionViews(t *testing.T) {
	chromium(t)
	e := newEnv(t)
	// The cluster is the package's: what this test makes goes with it.
	t.Cleanup(func() { e.deleteExts(t) })
	for _, ns := range []string{teamA, teamB} {
		e.createExt(t, templateGVR, "SandboxTemplate", ns, "python", map[string]any{"podTemplate": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "runtime", "image": "registry.example/python:3.13",
				"ports": []any{map[string]any{"name": "http", "containerPort": 8888}}}},
		}}})
	}
	e.createExt(t, poolGVR, "SandboxWarmPool", teamA, "python-pool", map[string]any{"sandboxTemplateRef": map[string]any{"name": "python"}, "replicas": 3})
	e.createExt(t, poolGVR, "SandboxWarmPool", teamB, "beta-pool", map[string]any{"sandboxTemplateRef": map[string]any{"name": "python"}, "replicas": 2})
	e.patchExtStatus(t, poolGVR, teamA, "python-pool", `{"status":{"replicas":3,"readyReplicas":1}}`)
	e.patchExtStatus(t, poolGVR, teamB, "beta-pool", `{"status":{"replicas":2,"readyReplicas":2}}`)
	e.createExt(t, claimGVR, "SandboxClaim", teamA, "mine", map[string]any{"warmPoolRef": map[string]any{"name": "python-pool"}})
	e.createExt(t, claimGVR, "SandboxClaim", teamB, "theirs", map[string]any{"warmPoolRef": map[string]any{"name": "beta-pool"}})
	e.patchExtStatus(t, claimGVR, teamA, "mine", `{"status":{"sandbox":{"name":"alpha-00"},"conditions":[`+
		`{"type":"Ready","status":"True","reason":"SandboxReady","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`)

	base := e.serveOptions(t, dashboard.Options{Extensions: e.catalog(t)})
	b := startBrowser(t)

	t.Run("warmpools", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base+"warmpools")
		b.waitValue(t, ctx, "pools", `(`+jsCells+`).map(c => c.slice(0, 7))`, [][]string{
			{teamA, "python-pool", "python", "3", "1", "3", "2"},
			{teamB, "beta-pool", "python", "2", "2", "2", "0"},
		})
		b.waitValue(t, ctx, "no kind status", `document.getElementById('kind-status').hidden`, true)
		b.waitValue(t, ctx, "live", `document.getElementById('live').textContent`, "Live")
		b.screenshot(t, ctx, "warmpools")

		// The pool fills up: the open page follows, without a reload.
		eval[any](t, ctx, `window.notReloaded = true`)
		began := time.Now()
		e.patchExtStatus(t, poolGVR, teamA, "python-pool", `{"status":{"replicas":3,"readyReplicas":3}}`)
		b.waitValue(t, ctx, "ready 3 on the open page", `(`+jsCells+`)[0].slice(4, 7)`, []string{"3", "3", "0"})
		t.Logf("pool status shown %v after the patch", time.Since(began).Round(time.Millisecond))
		b.waitValue(t, ctx, "no reload", `window.notReloaded === true`, true)

		eval[any](t, ctx, setField("namespace", teamB))
		b.waitValue(t, ctx, "namespace filter", `(`+jsCells+`).map(c => c[1])`, []string{"beta-pool"})
		eval[any](t, ctx, setField("namespace", ""))
		eval[any](t, ctx, setField("q", "python"))
		b.waitValue(t, ctx, "search", `(`+jsCells+`).map(c => c[1])`, []string{"python-pool"})
	})

	t.Run("templates", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base+"templates")
		b.waitValue(t, ctx, "templates", `(`+jsCells+`).map(c => c.slice(0, 5))`, [][]string{
			{teamA, "python", "runtime", "registry.example/python:3.13", "http 8888/TCP"},
			{teamB, "python", "runtime", "registry.example/python:3.13", "http 8888/TCP"},
		})
		b.screenshot(t, ctx, "templates")
	})

	t.Run("claims", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base+"claims")
		b.waitValue(t, ctx, "claims", `(`+jsCells+`).map(c => c.slice(0, 7))`, [][]string{
			{teamA, "mine", "python-pool", "python", "alpha-00 running", "ready", "SandboxReady"},
			{teamB, "theirs", "beta-pool", "python", "—", "pending", "—"},
		})
		b.waitValue(t, ctx, "the sandbox link", `document.querySelector('#rows tr td:nth-child(5) a').getAttribute('href')`, "sandbox?namespace=team-a&name=alpha-00")
		b.screenshot(t, ctx, "claims")
		// A new claim shows on the open page.
		eval[any](t, ctx, `window.notReloaded = true`)
		e.createExt(t, claimGVR, "SandboxClaim", teamA, "another", map[string]any{"warmPoolRef": map[string]any{"name": "python-pool"}})
		b.waitValue(t, ctx, "the new claim", `(`+jsCells+`).map(c => c[0] + '/' + c[1])`, []string{teamA + "/another", teamA + "/mine", teamB + "/theirs"})
		b.waitValue(t, ctx, "no reload", `window.notReloaded === true`, true)
	})

	t.Run("overview", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base)
		b.waitValue(t, ctx, "fill", `['fill-pools', 'fill-desired', 'fill-ready', 'fill-unclaimed'].map(id => document.getElementById(id).textContent)`,
			[]string{"2", "5", "5", "5"})
		eval[any](t, ctx, `window.notReloaded = true`)
		e.patchExtStatus(t, poolGVR, teamB, "beta-pool", `{"status":{"replicas":1,"readyReplicas":0}}`)
		b.waitValue(t, ctx, "short pools", `Array.from(document.querySelectorAll('#short-pools tbody tr')).map(tr => Array.from(tr.cells).map(td => td.textContent))`, [][]string{{teamB + "/beta-pool", "python", "2", "0", "2"}})
		b.waitValue(t, ctx, "ready total", `document.getElementById('fill-ready').textContent`, "3")
		b.waitValue(t, ctx, "no reload", `window.notReloaded === true`, true)
	})

	t.Run("viewer", func(t *testing.T) {
		hidden := e.serveOptions(t, dashboard.Options{
			Extensions: e.catalog(t),
			Viewer:     func(*http.Request) (dashboard.Viewer, error) { return hideNamespace(teamB), nil },
		})
		ctx := b.step(t)
		noTeamB := `!document.body.innerText.includes('team-b') && !document.body.innerText.includes('beta-pool') && !document.body.innerText.includes('theirs')`
		for page, want := range map[string][]string{
			"warmpools": {teamA + "/python-pool"},
			"templates": {teamA + "/python"},
			"claims":    {teamA + "/another", teamA + "/mine"},
		} {
			b.open(t, ctx, hidden+page)
			b.waitValue(t, ctx, page+" without team-b", `(`+jsCells+`).map(c => c[0] + '/' + c[1])`, want)
			b.waitValue(t, ctx, "team-b nowhere on "+page, noTeamB, true)
		}
		b.open(t, ctx, hidden)
		b.waitValue(t, ctx, "fill without team-b", `['fill-pools', 'fill-desired'].map(id => document.getElementById(id).textContent)`, []string{"1", "3"})
		b.waitValue(t, ctx, "team-b nowhere on the overview", noTeamB, true)
		for _, path := range []string{"api/warmpools?size=200", "api/warmpools?namespace=team-b", "api/templates", "api/claims?q=theirs", "api/overview", "api/kinds"} {
			code, s := apiGet(t, hidden+path, "")
			if code != http.StatusOK || strings.Contains(s, "team-b") || strings.Contains(s, "beta-pool") || strings.Contains(s, "theirs") {
				t.Errorf("GET %s (%d) shows team-b: %s", path, code, s)
			}
		}
	})
}
