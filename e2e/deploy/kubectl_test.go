package deploy

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// kubectlKustomize renders dir with the kustomize built into the real
// kubectl, by identity.
func kubectlKustomize(t *testing.T, dir string) map[string]*object {
	t.Helper()
	out := mustRun(t, kubectlBin(t), nil, "kustomize", dir)
	objs, err := decodeYAML(out, "kubectl kustomize "+dir)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*object{}
	for _, o := range objs {
		byID[o.id()] = o
	}
	return byID
}

// diff lists the paths where a and b differ (at most max of them).
func diff(a, b any, path string, out *[]string) {
	const max = 20
	if len(*out) >= max {
		return
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			diff(av[k], bv[k], path+"."+k, out)
		}
		return
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			break
		}
		for i := range av {
			diff(av[i], bv[i], fmt.Sprintf("%s[%d]", path, i), out)
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		*out = append(*out, fmt.Sprintf("%s: %v != %v", path, a, b))
	}
}

// TestKustomizeWithKubectl renders every kustomization with the real
// kustomize (kubectl kustomize) and checks that the tests' own renderer
// (render_test.go) renders the same objects; then it applies each with
// kubectl apply -k, server-side, as a dry run and then for real, to the
// real API server, and finds every object there.
func TestKustomizeWithKubectl(t *testing.T) {
	kubectl := kubectlBin(t)
	dirs := kustomizations(t)
	for _, dir := range dirs {
		rel, _ := filepath.Rel(deployDir, dir)
		t.Run("render "+rel, func(t *testing.T) {
			real := kubectlKustomize(t, dir)
			ours, err := render(dir)
			if err != nil {
				t.Fatal(err)
			}
			mine := map[string]*object{}
			for _, o := range ours {
				mine[o.id()] = o
			}
			if !reflect.DeepEqual(ids(real), ids(mine)) {
				t.Fatalf("kubectl kustomize renders %v, render %v", ids(real), ids(mine))
			}
			for id, o := range real {
				var d []string
				diff(o.m, mine[id].m, "", &d)
				if len(d) > 0 {
					t.Errorf("%s: kubectl kustomize and render differ:\n  %s", id, strings.Join(d, "\n  "))
				}
			}
		})
	}

	c := apiServer(t)
	admin := kubernetes.NewForConfigOrDie(c.AdminConfig())
	kubeconfig := c.KubeconfigPath
	// The static overlay's ConfigMap is its alone: it shows the dry run
	// changed nothing and the real apply did.
	const routesCM = "sandbox-router-routes"
	ensureNamespace(t, admin, routerNS)
	if err := admin.CoreV1().ConfigMaps(routerNS).Delete(t.Context(), routesCM, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	// Server-side apply with kubectl's own field manager; other tests of
	// the package apply the same objects with the harness's, hence
	// --force-conflicts.
	apply := []string{"--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts"}
	// deploy/crds first: nothing else needs it, but a real install has it.
	sort.SliceStable(dirs, func(i, j int) bool { return strings.HasSuffix(dirs[i], "crds") && !strings.HasSuffix(dirs[j], "crds") })
	t.Run("dry run", func(t *testing.T) {
		for _, dir := range dirs {
			out, err := run(t, kubectl, nil, append(apply, "--dry-run=server", "-k", dir)...)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if !strings.Contains(string(out), "(server dry run)") {
				t.Errorf("kubectl apply --dry-run=server -k %s:\n%s", dir, out)
			}
		}
		if _, err := admin.CoreV1().ConfigMaps(routerNS).Get(t.Context(), routesCM, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("after the dry run, ConfigMap %s: err %v, want NotFound", routesCM, err)
		}
	})
	t.Run("apply", func(t *testing.T) {
		for _, dir := range dirs {
			if _, err := run(t, kubectl, nil, append(apply, "-k", dir)...); err != nil {
				t.Errorf("%v", err)
				continue
			}
			// Every object the kustomization renders is there now.
			out, err := run(t, kubectl, nil, "--kubeconfig", kubeconfig, "get", "-k", dir, "-o", "name")
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if got, want := len(strings.Fields(string(out))), len(kubectlKustomize(t, dir)); got != want {
				t.Errorf("kubectl get -k %s finds %d objects, the kustomization renders %d:\n%s", dir, got, want, out)
			}
		}
		if _, err := admin.CoreV1().ConfigMaps(routerNS).Get(t.Context(), routesCM, metav1.GetOptions{}); err != nil {
			t.Errorf("after the apply, ConfigMap %s: %v", routesCM, err)
		}
	})
	// A field the API server does not know is refused (kubectl's default
	// field validation is strict), so the applies above checked every
	// field.
	t.Run("misspelt field refused", func(t *testing.T) {
		bad := kubectlKustomize(t, filepath.Join(deployDir, "base"))[idService]
		bad.m["spec"].(map[string]any)["selectr"] = map[string]any{"x": "y"}
		data, err := jsonOf(bad)
		if err != nil {
			t.Fatal(err)
		}
		_, err = run(t, kubectl, data, append(apply, "--dry-run=server", "-f", "-")...)
		if err == nil || !strings.Contains(err.Error(), "selectr") {
			t.Errorf("kubectl apply of a Service with a misspelt field: err %v, want it refused", err)
		}
	})
}

// jsonOf is an object as a JSON document, for a tool's standard input.
func jsonOf(o *object) ([]byte, error) { return json.Marshal(o.m) }
