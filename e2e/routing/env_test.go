package routing

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// waitTimeout bounds every wait for a state to show through the router.
const waitTimeout = 60 * time.Second

// ipBase keeps this package's pod addresses apart from other packages'
// sims, which go test may run at the same time.
var ipBase = netip.MustParseAddr("127.0.3.1")

func TestMain(m *testing.M) {
	code := m.Run()
	routerproc.RemoveShared()
	os.Exit(code)
}

func binary(t *testing.T) string {
	t.Helper()
	bin, err := routerproc.Shared()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// env is a cluster with the CRD, the sim, and admin clients. The router's
// RBAC is up to each test (applyRBAC for the cluster-wide grant).
type env struct {
	c   *cluster.Cluster
	sim *sim.Sim
	dyn dynamic.Interface
	cs  kubernetes.Interface
}

// applyRBAC applies deploy/rbac (the cluster-wide grant) and binds it to
// the non-admin user.
func applyRBAC(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	if err := c.GrantRouter(t.Context()); err != nil {
		t.Fatalf("apply RBAC: %v", err)
	}
}

func newEnv(t *testing.T, simOpts sim.Options, namespaces ...string) *env {
	t.Helper()
	c := cluster.Start(t)
	ctx := t.Context()
	if err := c.ApplyCRDs(ctx); err != nil {
		t.Fatalf("ApplyCRDs: %v", err)
	}
	e := &env{c: c, dyn: dynamic.NewForConfigOrDie(c.AdminConfig()), cs: kubernetes.NewForConfigOrDie(c.AdminConfig())}
	if err := cluster.CreateNamespaces(ctx, e.cs, namespaces...); err != nil {
		t.Fatal(err)
	}
	simOpts.Config = c.AdminConfig()
	simOpts.Logf = t.Logf
	if !simOpts.IPBase.IsValid() {
		simOpts.IPBase = ipBase
	}
	s, err := sim.New(simOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Run(ctx); err != nil {
		t.Fatalf("sim: %v", err)
	}
	e.sim = s
	return e
}

// startRouter runs the router binary with the non-admin identity and
// waits until its caches synced.
func (e *env) startRouter(t *testing.T, args ...string) *routerproc.Proc {
	t.Helper()
	p := launchRouter(t, e.c, args...)
	if err := p.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	return p
}

// launchRouter runs the router binary against c with the non-admin
// identity, without waiting for its caches.
func launchRouter(t *testing.T, c *cluster.Cluster, args ...string) *routerproc.Proc {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "router.kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, c.RouterToken); err != nil {
		t.Fatal(err)
	}
	// --activator=false: these tests check what the resolver reports
	// (503 sandbox_suspended and the like); e2e/activator tests holding
	// and resuming.
	args = append([]string{"--kubeconfig", kubeconfig, "--allow-loopback-pod-ip", "--base-domain", "sandbox.test",
		"--access-log", "off", "--dial-retries", "2", "--activator=false"}, args...)
	p, err := routerproc.Start(t.Context(), routerproc.Options{Bin: binary(t), Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("router exit: %v", err)
		}
		if t.Failed() {
			t.Logf("router log:\n%s", tail(p.Log(), 20000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func sandboxGVR(version string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: sim.Group, Version: version, Resource: "sandboxes"}
}

// createSandbox creates a running (or suspended) Sandbox through version.
func (e *env) createSandbox(t *testing.T, version, ns, name string, suspended bool, annotations map[string]string) types.UID {
	t.Helper()
	spec := map[string]any{"operatingMode": "Running"}
	if suspended {
		spec["operatingMode"] = "Suspended"
	}
	if version == "v1alpha1" {
		spec = map[string]any{"replicas": int64(1)}
		if suspended {
			spec["replicas"] = int64(0)
		}
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": sim.Group + "/" + version, "kind": "Sandbox",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
	if annotations != nil {
		obj.SetAnnotations(annotations)
	}
	got, err := e.dyn.Resource(sandboxGVR(version)).Namespace(ns).Create(t.Context(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create sandbox %s/%s: %v", ns, name, err)
	}
	return got.GetUID()
}

// setSuspended patches the sandbox's suspension field of version.
func (e *env) setSuspended(t *testing.T, version, ns, name string, suspended bool) {
	t.Helper()
	patch := `{"spec":{"operatingMode":"Running"}}`
	switch {
	case version == "v1alpha1" && suspended:
		patch = `{"spec":{"replicas":0}}`
	case version == "v1alpha1":
		patch = `{"spec":{"replicas":1}}`
	case suspended:
		patch = `{"spec":{"operatingMode":"Suspended"}}`
	}
	if _, err := e.dyn.Resource(sandboxGVR(version)).Namespace(ns).Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch %s/%s: %v", ns, name, err)
	}
}

func (e *env) deleteSandbox(t *testing.T, ns, name string) {
	t.Helper()
	if err := e.dyn.Resource(sandboxGVR("v1beta1")).Namespace(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete %s/%s: %v", ns, name, err)
	}
}

// reply is what the router answered: the status, the backend's JSON
// (which pod served) or the router's error code.
type reply struct {
	Status int
	Pod    string `json:"pod"`
	Sbx    string `json:"sandbox"`
	IP     string `json:"ip"`
	Code   string `json:"code"`
	Err    error
}

func (r reply) String() string {
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	return fmt.Sprintf("%d pod=%q sandbox=%q ip=%s code=%q", r.Status, r.Pod, r.Sbx, r.IP, r.Code)
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// get sends GET / through the router with the given headers (a "Host"
// entry sets the host).
func get(ctx context.Context, p *routerproc.Proc, headers map[string]string) reply {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTPAddr+"/", nil)
	if err != nil {
		return reply{Err: err}
	}
	for k, v := range headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r := reply{Status: resp.StatusCode, Err: err}
	_ = json.Unmarshal(body, &r)
	return r
}

func byID(ns, name string) map[string]string {
	return map[string]string{"X-Sandbox-ID": name, "X-Sandbox-Namespace": ns}
}

// eventually waits until the reply to headers satisfies ok.
func eventually(t *testing.T, p *routerproc.Proc, what string, headers map[string]string, ok func(reply) bool) reply {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last reply
	for time.Now().Before(deadline) {
		if last = get(t.Context(), p, headers); ok(last) {
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: last reply %v", what, last)
	return last
}

func status(code int, errCode string) func(reply) bool {
	return func(r reply) bool { return r.Err == nil && r.Status == code && (errCode == "" || r.Code == errCode) }
}

func servedBy(sandbox string) func(reply) bool {
	return func(r reply) bool { return r.Err == nil && r.Status == http.StatusOK && r.Sbx == sandbox }
}

// applyNamespacedRBAC stamps deploy/rbac/namespaced's Role into ns and
// binds it to the non-admin user.
func applyNamespacedRBAC(t *testing.T, c *cluster.Cluster, ns string) {
	t.Helper()
	role, err := os.ReadFile("../../deploy/rbac/namespaced/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stamped := strings.Replace(string(role), "metadata:\n", "metadata:\n  namespace: "+ns+"\n", 1)
	binding := `apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: sandbox-router-e2e-user, namespace: ` + ns + `}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: sandbox-router}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: router}]
`
	path := filepath.Join(t.TempDir(), "namespaced.yaml")
	if err := os.WriteFile(path, []byte(stamped+"\n---\n"+binding), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cluster.ApplyManifests(t.Context(), c.AdminConfig(), path); err != nil {
		t.Fatalf("apply namespaced RBAC: %v", err)
	}
}
