package deploy

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// helmLabels are the labels the chart adds to every object and
// (instance) to every selector, which kustomize's manifests do not have.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}

// normalizeHelm removes Helm's labels from an object rendered by the
// chart: from its metadata, and app.kubernetes.io/instance from every
// selector (the Deployment's and its pod template's labels, the
// Service's, the PDB's, the NetworkPolicy's, the topology spread
// constraints').
func normalizeHelm(o *object) {
	strip := func(m any, keys ...string) {
		if mm, ok := m.(map[string]any); ok {
			for _, k := range keys {
				delete(mm, k)
			}
		}
	}
	strip(get(o.m, "metadata", "labels"), helmLabels...)
	if a, ok := get(o.m, "metadata", "annotations").(map[string]any); ok {
		for k := range a {
			if strings.HasPrefix(k, "meta.helm.sh/") {
				delete(a, k)
			}
		}
	}
	const instance = "app.kubernetes.io/instance"
	switch o.kind() {
	case "Deployment":
		strip(get(o.m, "spec", "selector", "matchLabels"), instance)
		strip(get(o.m, "spec", "template", "metadata", "labels"), instance)
		tsc, _ := get(o.m, "spec", "template", "spec", "topologySpreadConstraints").([]any)
		for _, c := range tsc {
			strip(get(c, "labelSelector", "matchLabels"), instance)
		}
	case "Service":
		strip(get(o.m, "spec", "selector"), instance)
	case "PodDisruptionBudget":
		strip(get(o.m, "spec", "selector", "matchLabels"), instance)
	case "NetworkPolicy":
		strip(get(o.m, "spec", "podSelector", "matchLabels"), instance)
	}
}

// TestHelmMatchesKustomize: for the default configuration, and for the
// values that match each overlay, the chart (release sandbox-router in
// namespace sandbox-router) renders what kustomize (the real one, in
// kubectl) renders, object by object and field by field, except the
// Namespace (helm install --create-namespace makes it) and Helm's labels
// (normalizeHelm). The chart's README says so.
func TestHelmMatchesKustomize(t *testing.T) {
	pairs := []struct {
		dir  string
		args []string
	}{
		{"base", nil},
		{"overlays/static", []string{"--set", "resolver.mode=static"}},
		{"overlays/namespaced", []string{"--set", "resolver.namespaces={team-a}"}},
		{"overlays/kubernetes-authz", []string{"--set", "authz.mode=kubernetes"}},
		{"overlays/xds", []string{"--set", "xds.enabled=true"}},
		{"overlays/dashboard", []string{"--set", "authz.mode=kubernetes,dashboard.enabled=true"}},
	}
	for _, p := range pairs {
		t.Run(p.dir, func(t *testing.T) {
			k := kubectlKustomize(t, deployDir+"/"+p.dir)
			if k[idNamespace] == nil {
				t.Fatalf("kustomize renders no %s", idNamespace)
			}
			delete(k, idNamespace)
			h := mustTemplate(t, "sandbox-router", routerNS, p.args...)
			for _, o := range h {
				normalizeHelm(o)
			}
			if got, want := ids(h), ids(k); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("the chart renders\n  %s\nkustomize\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			for id, ko := range k {
				var d []string
				diff(h[id].m, ko.m, "", &d)
				if len(d) > 0 {
					t.Errorf("%s: chart != kustomize:\n  %s", id, strings.Join(d, "\n  "))
				}
			}
		})
	}
}

// helmRuns numbers the runs of TestHelmOnAPIServer in this process, so
// that -count=N installs releases of new names on the shared API server.
var helmRuns atomic.Int32

// TestHelmOnAPIServer installs every variant on the real API server: the
// rendered objects through kubectl's server-side dry run (which checks
// every field against the API server's schema and changes nothing), then
// helm install --dry-run=server and helm install, each release in a
// namespace of its own. Then it asks the API server what the release's
// ServiceAccount may do, with SubjectAccessReviews over every verb of the
// resources a router could be tempted to touch and with the router's own
// requests made with the account's token: exactly the variant's grants.
func TestHelmOnAPIServer(t *testing.T) {
	c := apiServer(t)
	helm, kubectl := helmBin(t), kubectlBin(t)
	admin := kubernetes.NewForConfigOrDie(c.AdminConfig())
	kubeconfig := c.KubeconfigPath
	runN := helmRuns.Add(1)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			ns := fmt.Sprintf("h%d-%s", runN, v.name)
			release := ns
			_, manifest, err := helmTemplate(t, release, ns, v.valuesArgs()...)
			if err != nil {
				t.Fatal(err)
			}
			objs := mustTemplate(t, release, ns, v.valuesArgs()...)
			ensureNamespace(t, admin, ns)

			out, err := run(t, kubectl, manifest, "--kubeconfig", kubeconfig, "apply", "--server-side", "--dry-run=server", "-f", "-")
			if err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(out, []byte("(server dry run)")); n != len(objs) {
				t.Errorf("the dry run applied %d objects, the chart renders %d:\n%s", n, len(objs), out)
			}
			deployment := release + "-sandbox-router"
			if _, err := admin.AppsV1().Deployments(ns).Get(t.Context(), deployment, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Fatalf("after the dry run, Deployment %s/%s: err %v, want NotFound", ns, deployment, err)
			}

			install := append([]string{"--kubeconfig", kubeconfig, "install", release, chartDir, "--namespace", ns}, v.valuesArgs()...)
			mustRun(t, helm, nil, append(install, "--dry-run=server")...)
			mustRun(t, helm, nil, install...)
			out = mustRun(t, kubectl, manifest, "--kubeconfig", kubeconfig, "get", "-f", "-", "-o", "name")
			if n := len(strings.Fields(string(out))); n != len(objs) {
				t.Errorf("kubectl get finds %d of the %d objects the chart renders:\n%s", n, len(objs), out)
			}
			d, err := admin.AppsV1().Deployments(ns).Get(t.Context(), deployment, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Spec.Template.Spec.AutomountServiceAccountToken; got == nil || *got != v.automount {
				t.Errorf("Deployment automountServiceAccountToken %v, want %v", got, v.automount)
			}

			// The release's ServiceAccount, as the router's pod would be.
			sa := d.Spec.Template.Spec.ServiceAccountName
			tok, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), sa,
				&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("token of %s/%s: %v", ns, sa, err)
			}
			id := identity{name: "ServiceAccount " + ns + "/" + sa, cfg: c.TokenConfig(tok.Status.Token),
				user:   "system:serviceaccount:" + ns + ":" + sa,
				groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
			g := v.grants(ns)
			waitGrants(t, admin, id, g)

			// The router's own requests with the account's token.
			for _, where := range []string{"", "team-a", "team-b"} {
				readable := g.namespaces[where] || g.namespaces[""]
				expect(t, id, reads(id.cfg, where), readable)
				if where != "" {
					expect(t, id, patches(id.cfg, where), readable && g.patch)
					expect(t, id, denied(id.cfg, where), false)
				}
			}
			expect(t, id, reviews(id.cfg), g.reviews)
			for _, where := range []string{"", "team-a", "team-b"} {
				expect(t, id, extensionReads(id.cfg, where), g.extensions[where] || g.extensions[""])
			}
			if g.leaseNS != "" {
				expect(t, id, []probe{leaderElection(id.cfg, admin, g.leaseNS, v.name)}, true)
				expect(t, id, leaseDenied(id.cfg, g.leaseNS, "team-a"), false)
			} else {
				expect(t, id, []probe{getLease(id.cfg, ns)}, false)
			}
			accessMatrix(t, admin, id, g, "team-a", "team-b", routerNS, ns)
		})
	}
}

// waitGrants waits until the API server's authorizer allows id
// everything g grants (a new binding takes effect a moment after it is
// written), so that the checks after it see no transient 403.
func waitGrants(t *testing.T, admin kubernetes.Interface, id identity, g grants) {
	t.Helper()
	var want []authorizationv1.ResourceAttributes
	for ns := range g.namespaces {
		want = append(want,
			authorizationv1.ResourceAttributes{Namespace: ns, Verb: "watch", Group: "agents.x-k8s.io", Resource: "sandboxes"},
			authorizationv1.ResourceAttributes{Namespace: ns, Verb: "watch", Resource: "pods"})
		if g.patch {
			want = append(want, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "patch", Group: "agents.x-k8s.io", Resource: "sandboxes"})
		}
	}
	if g.leaseNS != "" {
		want = append(want, authorizationv1.ResourceAttributes{Namespace: g.leaseNS, Verb: "update", Group: "coordination.k8s.io", Resource: "leases"})
	}
	if g.endpointSlicesNS != "" {
		want = append(want, authorizationv1.ResourceAttributes{Namespace: g.endpointSlicesNS, Verb: "watch", Group: "discovery.k8s.io", Resource: "endpointslices"})
	}
	for ns := range g.extensions {
		want = append(want, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "watch", Group: extensionsGroup, Resource: "sandboxclaims"})
	}
	if g.reviews {
		want = append(want,
			authorizationv1.ResourceAttributes{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"},
			authorizationv1.ResourceAttributes{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"})
	}
	for _, a := range want {
		waitSAR(t, admin, id, a, true)
	}
}
