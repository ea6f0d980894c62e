package images

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
	"github.com/sandbox-router/sandbox-router/images"
)

// ipBase keeps this package's pod addresses apart from other packages'
// sims, which go test may run at the same time.
var ipBase = netip.MustParseAddr("127.5.0.1")

// waitTimeout bounds each wait for the cluster to reach a state.
const waitTimeout = 60 * time.Second

// The binary from the pulled image names the commit it was built from.
func TestBinaryVersion(t *testing.T) {
	bin := hostBinary(t)
	out, err := exec.CommandContext(t.Context(), bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	version := image(t).annotations[images.AnnotationVersion]
	lines := strings.Split(string(out), "\n")
	if lines[0] != "sandbox-router "+version {
		t.Errorf("version line %q, want the image's version %s", lines[0], version)
	}
	head := git(t, "rev-parse", "HEAD")
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "commit "+head) }) {
		t.Errorf("no line naming the commit %s:\n%s", head, out)
	}
	t.Logf("%s version:\n%s", bin, out)
}

// The binary from the pulled image routes a request to a sandbox on the
// real API server, as the router user of deploy/rbac.
func TestBinaryRoutes(t *testing.T) {
	bin := hostBinary(t)
	c := cluster.Start(t)
	ctx := t.Context()
	if err := c.ApplyCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.GrantRouter(ctx); err != nil {
		t.Fatal(err)
	}
	const ns, name = "default", "imaged"
	s, err := sim.New(sim.Options{Config: c.AdminConfig(), Namespaces: []string{ns}, IPBase: ipBase, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}

	// The sandbox is Ready before the router starts, so the router's
	// first list (its caches are synced when it reports ready) has it.
	dyn := dynamic.NewForConfigOrDie(c.AdminConfig())
	gvr := schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": sim.Group + "/v1beta1", "kind": "Sandbox",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"operatingMode": "Running"},
	}}
	if _, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSandboxReady(t, dyn.Resource(gvr).Namespace(ns), name)

	kubeconfig := filepath.Join(t.TempDir(), "router.kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, c.RouterToken); err != nil {
		t.Fatal(err)
	}
	p := routerproc.ForTest(t, routerproc.Options{Bin: bin, Args: []string{
		"--kubeconfig", kubeconfig, "--allow-loopback-pod-ip", "--access-log", "off", "--activator=false",
	}})

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTPAddr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Sandbox-ID", name)
	req.Header.Set("X-Sandbox-Namespace", ns)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Sandbox, Pod string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	pod, _, _ := s.Pod(ns, name)
	if resp.StatusCode != http.StatusOK || body.Sandbox != name || body.Pod != pod {
		t.Errorf("status %d, served by sandbox %q pod %q; want 200 from %s (pod %s)", resp.StatusCode, body.Sandbox, body.Pod, name, pod)
	}
}

// waitSandboxReady watches the Sandbox until its Ready condition is True
// (the sim writes it after the pod's). A watch from no resource version
// starts with the object as it is, so nothing is missed.
func waitSandboxReady(t *testing.T, sandboxes dynamic.ResourceInterface, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	w, err := sandboxes.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			t.Fatalf("watch: %v", ev.Object)
		}
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		if slices.ContainsFunc(conds, func(c any) bool {
			m, _ := c.(map[string]any)
			return m["type"] == "Ready" && m["status"] == "True"
		}) {
			return
		}
	}
	t.Fatalf("sandbox %s not Ready within %s", name, waitTimeout)
}
