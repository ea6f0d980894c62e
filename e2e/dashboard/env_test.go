package dashboard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/resolver/kube"
)

// The package's tests share one API server: starting etcd, the API
// server, the sim and thirty sandboxes is most of a test's time, and the
// tests only read the sandboxes, or change one and change it back. Each
// test begins and ends with resetModes, so a test that failed half-way
// leaves nothing behind for the next.

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.e != nil {
		shared.e.close()
	}
	routerproc.RemoveShared()
	os.Exit(code)
}

var shared struct {
	once sync.Once
	e    *env
	err  error
}

// env is the cluster, the sim, the sandboxes, and the resolver.
type env struct {
	c   *cluster.Cluster
	cs  kubernetes.Interface
	dyn dynamic.Interface
	sim *sim.Sim
	r   *kube.Resolver
	sbs []sandbox

	stopResolver func() error
}

// newEnv returns the package's env, started on first use, with every
// sandbox in its initial state; the sandboxes are put back in it when t
// ends. It is stopped in TestMain.
func newEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("real etcd and kube-apiserver: skipped in -short mode")
	}
	start := time.Now()
	shared.once.Do(func() {
		shared.e, shared.err = startEnv()
		if shared.err == nil {
			t.Logf("cluster, sim, %d sandboxes and resolver ready in %v", len(shared.e.sbs), time.Since(start).Round(time.Millisecond))
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	e := shared.e
	e.resetModes(t)
	t.Cleanup(func() { e.resetModes(t) })
	return e
}

func startEnv() (*env, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a cold build of kube-apiserver takes minutes
	defer cancel()
	c, err := cluster.New(ctx, cluster.Options{})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	e := &env{c: c, cs: kubernetes.NewForConfigOrDie(c.AdminConfig()), dyn: dynamic.NewForConfigOrDie(c.AdminConfig()), sbs: allSandboxes()}
	if err := e.populate(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.stopResolver != nil {
		if err := e.stopResolver(); err != nil {
			fmt.Fprintln(os.Stderr, "resolver:", err)
		}
	}
	if e.sim != nil {
		e.sim.Close()
	}
	if err := e.c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
	}
}

// populate applies the CRDs and the router's grants, creates the
// namespaces and sandboxes, runs the sim and the resolver, and waits
// until the resolver shows every sandbox in its initial state.
func (e *env) populate(ctx context.Context) error {
	if err := e.c.ApplyCRDs(ctx); err != nil {
		return err
	}
	if err := e.c.GrantRouter(ctx); err != nil {
		return err
	}
	if err := cluster.CreateNamespaces(ctx, e.cs, teamA, teamB); err != nil {
		return err
	}
	s, err := sim.New(sim.Options{Config: e.c.AdminConfig(), Namespaces: []string{teamA, teamB}, IPBase: ipBase})
	if err != nil {
		return err
	}
	e.sim = s
	if err := s.Run(context.Background()); err != nil { // lives until close
		return err
	}
	for _, sb := range e.sbs {
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": sim.Group + "/v1beta1", "kind": "Sandbox",
			"metadata": map[string]any{"name": sb.name, "namespace": sb.ns},
			"spec":     map[string]any{"operatingMode": sb.mode()},
		}}
		if _, err := e.dyn.Resource(sandboxGVR).Namespace(sb.ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return err
		}
	}

	// The resolver as the router runs it, with the router's own identity
	// (user "router", granted by GrantRouter).
	e.r, err = kube.New(kube.Options{Config: e.c.RouterConfig(), Versions: []string{"v1beta1"}})
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.r.Run(rctx) }()
	e.stopResolver = func() error {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	select {
	case <-e.r.SyncedC():
	case err := <-done:
		done <- err // for stopResolver
		return fmt.Errorf("resolver ended before its caches synced: %v", err)
	case <-time.After(waitTimeout):
		return errors.New("resolver caches not synced")
	}
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	for _, sb := range e.sbs {
		if err := e.waitStateCtx(wctx, sb.ns, sb.name, sb.state()); err != nil {
			return err
		}
	}
	return nil
}

// mode is the sandbox's initial spec.operatingMode; state what the
// resolver reports in it.
func (s sandbox) mode() string {
	if s.suspended {
		return "Suspended"
	}
	return "Running"
}

func (s sandbox) state() resolver.State {
	if s.suspended {
		return resolver.StateSuspended
	}
	return resolver.StateRunning
}

// resetModes puts every sandbox whose operatingMode a test changed back
// in its initial mode, and waits until the resolver shows each in its
// initial state.
func (e *env) resetModes(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	want := make(map[string]string, len(e.sbs))
	for _, sb := range e.sbs {
		want[sb.key()] = sb.mode()
	}
	for _, ns := range []string{teamA, teamB} {
		list, err := e.dyn.Resource(sandboxGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list.Items {
			mode, _, _ := unstructured.NestedString(u.Object, "spec", "operatingMode")
			if w, ok := want[ns+"/"+u.GetName()]; ok && mode != w {
				t.Logf("putting %s/%s back in %s", ns, u.GetName(), w)
				e.patchMode(ctx, t, ns, u.GetName(), w)
			}
		}
	}
	for _, sb := range e.sbs {
		if err := e.waitStateCtx(ctx, sb.ns, sb.name, sb.state()); err != nil {
			t.Fatal(err)
		}
	}
}

// waitState waits until the resolver reports the sandbox in state want.
func (e *env) waitState(t *testing.T, ns, name string, want resolver.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := e.waitStateCtx(ctx, ns, name, want); err != nil {
		t.Fatal(err)
	}
}

func (e *env) waitStateCtx(ctx context.Context, ns, name string, want resolver.State) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got := e.r.Lookup(resolver.Key{Namespace: ns, Name: name}).State
		if got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s/%s: resolver state %v, want %v", ns, name, got, want)
		case <-tick.C:
		}
	}
}

// setMode patches the sandbox's spec.operatingMode as the admin.
func (e *env) setMode(t *testing.T, ns, name, mode string) {
	t.Helper()
	e.patchMode(t.Context(), t, ns, name, mode)
}

func (e *env) patchMode(ctx context.Context, t *testing.T, ns, name, mode string) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"operatingMode":%q}}`, mode)
	if _, err := e.dyn.Resource(sandboxGVR).Namespace(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) uid(t *testing.T, ns, name string) string {
	t.Helper()
	u, err := e.dyn.Resource(sandboxGVR).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(u.GetUID())
}
