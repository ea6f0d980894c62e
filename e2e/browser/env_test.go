package browser

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	akube "github.com/sandbox-router/sandbox-router/access/kube"
	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// waitTimeout bounds every wait: for a pod, the router, a page, a DOM
// state.
const waitTimeout = 60 * time.Second

// ipBase keeps this package's pod addresses apart from the other e2e
// packages' sims, which go test may run at the same time.
var ipBase = netip.MustParseAddr("127.3.0.1")

const (
	namespace  = "team-a"
	agents     = "agents" // the ServiceAccounts' namespace
	baseDomain = "sandbox.test"
	cookieName = "sandbox-session"
)

var sandboxGVR = schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.e != nil {
		shared.e.close()
	}
	routerproc.RemoveShared()
	os.Exit(code)
}

// env is one API server for the whole package (each e2e package has its
// own, which keeps make test short): the CRDs, the router's grants, a sim
// for namespace, and admin clients. Tests share it, and -count=N runs
// share it too, so each run makes sandboxes and identities of names of
// its own (sandboxes).
type env struct {
	c      *cluster.Cluster
	sim    *sim.Sim
	simLog *tail // the sim outlives any one test: its log is kept here
	cs     kubernetes.Interface
	dyn    dynamic.Interface
}

// shared is the package's env, started by the first test that asks.
var shared struct {
	once sync.Once
	e    *env
	err  error
}

// sharedEnv returns the package's env, starting it on first use. A test
// that fails prints the API server's and the sim's logs.
func sharedEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("real etcd and kube-apiserver: skipped in -short mode")
	}
	shared.once.Do(func() { shared.e, shared.err = startEnv() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	e := shared.e
	t.Cleanup(func() {
		if t.Failed() {
			e.c.DumpLogs(t.Logf)
			t.Logf("sim log (every test's so far):\n%s", e.simLog)
		}
	})
	return e
}

func startEnv() (*env, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a cold build of kube-apiserver takes minutes
	defer cancel()
	c, err := cluster.New(ctx, cluster.Options{})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	e := &env{c: c, simLog: &tail{max: 64 << 10}, cs: kubernetes.NewForConfigOrDie(c.AdminConfig()), dyn: dynamic.NewForConfigOrDie(c.AdminConfig())}
	if err := e.populate(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) populate(ctx context.Context) error {
	if err := e.c.ApplyCRDs(ctx); err != nil {
		return err
	}
	if err := e.c.GrantRouter(ctx); err != nil {
		return err
	}
	if err := cluster.CreateNamespaces(ctx, e.cs, namespace, agents); err != nil {
		return err
	}
	s, err := sim.New(sim.Options{Config: e.c.AdminConfig(), Namespaces: []string{namespace}, IPBase: ipBase,
		Logf: func(format string, args ...any) { fmt.Fprintf(e.simLog, format+"\n", args...) }})
	if err != nil {
		return err
	}
	e.sim = s
	// The sim lives until close, not with the start-up's context.
	return s.Run(context.Background())
}

func (e *env) close() {
	if e.sim != nil {
		e.sim.Close()
	}
	if err := e.c.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
	}
}

// runs numbers the calls of sandboxes, for names no other run has used.
var runs atomic.Int64

// sandboxes starts a running sandbox for each name, suffixed with a
// number of this call's own (sb1 -> sb1-3), waits until their pods are
// ready, deletes them when the test ends, and returns their names.
func (e *env) sandboxes(t *testing.T, names ...string) []string {
	t.Helper()
	ctx := t.Context()
	run := runs.Add(1)
	var out []string
	for _, n := range names {
		name := fmt.Sprintf("%s-%d", n, run)
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": sim.Group + "/v1beta1", "kind": "Sandbox",
			"metadata": map[string]any{"name": name, "namespace": namespace},
			"spec":     map[string]any{"operatingMode": "Running"},
		}}
		if _, err := e.dyn.Resource(sandboxGVR).Namespace(namespace).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// The sim then stops its backend; t.Context() has ended by now.
			if err := e.dyn.Resource(sandboxGVR).Namespace(namespace).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
				t.Errorf("delete sandbox %s: %v", name, err)
			}
		})
		out = append(out, name)
	}
	for _, name := range out {
		wctx, cancel := context.WithTimeout(ctx, waitTimeout)
		_, err := e.sim.WaitPod(wctx, namespace, name, func(p sim.PodInfo) bool { return p.Ready })
		cancel()
		if err != nil {
			t.Fatalf("sandbox %s: %v", name, err)
		}
	}
	return out
}

func (e *env) uid(t *testing.T, name string) string {
	t.Helper()
	u, err := e.dyn.Resource(sandboxGVR).Namespace(namespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(u.GetUID())
}

// serviceAccountFor creates a ServiceAccount, named after the sandbox,
// that RBAC lets reach only that sandbox, and returns a token for it from
// the TokenRequest API.
func (e *env) serviceAccountFor(t *testing.T, name string) string {
	t.Helper()
	ctx := t.Context()
	sa := "viewer-" + name
	tok, err := cluster.CreateServiceAccount(ctx, e.cs, agents, sa)
	if err != nil {
		t.Fatal(err)
	}
	rules := []rbacv1.PolicyRule{{APIGroups: []string{akube.Group}, Resources: []string{akube.Resource + "/" + akube.Subresource},
		Verbs: []string{akube.Verb}, ResourceNames: []string{name}}}
	if err := cluster.Grant(ctx, e.cs, namespace, sa, rules, cluster.ServiceAccountSubject(agents, sa)); err != nil {
		t.Fatal(err)
	}
	return tok
}

// startRouter runs the router binary as the non-admin user "router" with
// args after the common ones, and waits until its caches synced; its log,
// access log included, is printed when the test fails.
func (e *env) startRouter(t *testing.T, args ...string) *routerproc.Proc {
	t.Helper()
	bin, err := routerproc.Shared()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "router.kubeconfig")
	if err := e.c.WriteKubeconfig(kubeconfig, e.c.RouterToken); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--kubeconfig", kubeconfig, "--namespaces", namespace, "--allow-loopback-pod-ip",
		"--activator=false", "--access-log", "stderr"}, args...)
	return routerproc.ForTest(t, routerproc.Options{Bin: bin, Args: args})
}
