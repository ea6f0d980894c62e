package routing

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// TestRouting drives one cluster, sim and router through the routing
// behaviours, in order: each step's state builds on the previous one.
func TestRouting(t *testing.T) {
	e := newEnv(t, sim.Options{StartDelay: 100 * time.Millisecond}, "team-a")
	applyRBAC(t, e.c)
	p := e.startRouter(t)

	uid := e.createSandbox(t, "v1beta1", "default", "alpha", false, nil)
	first := eventually(t, p, "alpha by header", byID("default", "alpha"), servedBy("alpha"))

	t.Run("by host", func(t *testing.T) {
		for _, host := range []string{"alpha.default.sandbox.test", "8888-alpha.default.sandbox.test"} {
			if r := get(t.Context(), p, map[string]string{"Host": host}); !servedBy("alpha")(r) {
				t.Fatalf("%s: %v", host, r)
			}
		}
	})
	t.Run("by UID", func(t *testing.T) {
		h := byID("default", "alpha")
		h["X-Sandbox-UID"] = string(uid)
		if r := get(t.Context(), p, h); !servedBy("alpha")(r) {
			t.Fatalf("right UID: %v", r)
		}
		h["X-Sandbox-UID"] = "00000000-0000-4000-8000-000000000000"
		if r := get(t.Context(), p, h); !status(http.StatusNotFound, "sandbox_not_found")(r) {
			t.Fatalf("wrong UID: %v", r)
		}
	})
	t.Run("v1alpha1 sandbox", func(t *testing.T) {
		e.createSandbox(t, "v1alpha1", "team-a", "beta", false, nil)
		eventually(t, p, "beta", byID("team-a", "beta"), servedBy("beta"))
		e.setSuspended(t, "v1alpha1", "team-a", "beta", true)
		eventually(t, p, "beta suspended", byID("team-a", "beta"), status(http.StatusServiceUnavailable, "sandbox_suspended"))
		e.setSuspended(t, "v1alpha1", "team-a", "beta", false)
		eventually(t, p, "beta resumed", byID("team-a", "beta"), servedBy("beta"))
	})
	t.Run("recreated pod gets a new IP", func(t *testing.T) {
		if err := e.sim.RestartPod(t.Context(), "default", "alpha"); err != nil {
			t.Fatal(err)
		}
		r := eventually(t, p, "alpha on its new pod", byID("default", "alpha"), func(r reply) bool {
			return servedBy("alpha")(r) && r.Pod != first.Pod
		})
		if r.IP == first.IP {
			t.Fatalf("new pod %s kept IP %s", r.Pod, r.IP)
		}
		// The old address is gone for good: every later request lands on
		// the new pod.
		for range 20 {
			if got := get(t.Context(), p, byID("default", "alpha")); got.Pod != r.Pod {
				t.Fatalf("after the switch: %v, want pod %s", got, r.Pod)
			}
		}
	})
	t.Run("suspended, then resumed", func(t *testing.T) {
		e.createSandbox(t, "v1beta1", "default", "sleepy", true, nil)
		eventually(t, p, "sleepy suspended", byID("default", "sleepy"), status(http.StatusServiceUnavailable, "sandbox_suspended"))
		e.setSuspended(t, "v1beta1", "default", "sleepy", false)
		eventually(t, p, "sleepy resumed", byID("default", "sleepy"), servedBy("sleepy"))
		e.setSuspended(t, "v1beta1", "default", "sleepy", true)
		eventually(t, p, "sleepy suspended again", byID("default", "sleepy"), status(http.StatusServiceUnavailable, "sandbox_suspended"))
	})
	t.Run("warm pool", func(t *testing.T) {
		podName, podUID, _, err := e.sim.CreateWarmPoolPod(t.Context(), "default", "python")
		if err != nil {
			t.Fatal(err)
		}
		byUID := byID("default", podName)
		byUID["X-Sandbox-UID"] = string(podUID)
		eventually(t, p, "warm pod by UID", byUID, servedBy(""))
		if r := get(t.Context(), p, byID("default", podName)); !status(http.StatusNotFound, "sandbox_not_found")(r) {
			t.Fatalf("warm pod by name: %v", r)
		}
		wrongName := byID("default", "alpha")
		wrongName["X-Sandbox-UID"] = string(podUID)
		if r := get(t.Context(), p, wrongName); !status(http.StatusNotFound, "")(r) {
			t.Fatalf("warm pod UID under another name: %v", r)
		}

		e.createSandbox(t, "v1beta1", "default", "claimed", false, map[string]string{sim.AnnotationAdopt: podName})
		r := eventually(t, p, "adopted pod by sandbox name", byID("default", "claimed"), servedBy("claimed"))
		if r.Pod != podName {
			t.Fatalf("claimed is served by %s, want the adopted %s", r.Pod, podName)
		}
		eventually(t, p, "adopted pod no longer by its own UID", byUID, status(http.StatusNotFound, ""))
	})
	t.Run("watching v1alpha1 only", func(t *testing.T) {
		alphaOnly := e.startRouter(t, "--sandbox-versions", "v1alpha1")
		for _, c := range []struct {
			ns, name string
			ok       func(reply) bool
		}{
			{"default", "alpha", servedBy("alpha")},
			{"team-a", "beta", servedBy("beta")},
			{"default", "sleepy", status(http.StatusServiceUnavailable, "sandbox_suspended")},
		} {
			if r := get(t.Context(), alphaOnly, byID(c.ns, c.name)); !c.ok(r) {
				t.Fatalf("%s/%s through v1alpha1: %v", c.ns, c.name, r)
			}
		}
	})
	t.Run("deleted", func(t *testing.T) {
		e.deleteSandbox(t, "default", "sleepy")
		eventually(t, p, "deleted sandbox", byID("default", "sleepy"), status(http.StatusNotFound, "sandbox_not_found"))
		if r := get(t.Context(), p, byID("default", "never-existed")); !status(http.StatusNotFound, "sandbox_not_found")(r) {
			t.Fatalf("unknown: %v", r)
		}
	})
	t.Run("API server restart under traffic", func(t *testing.T) {
		apiServerRestart(t, e, p)
	})
}

// apiServerRestart keeps requests flowing to a running sandbox while the
// API server is stopped and started again: none may fail, and changes
// made after the restart must reach the router.
func apiServerRestart(t *testing.T, e *env, p *routerproc.Proc) {
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var served, failed atomic.Int64
	var firstFailure atomic.Pointer[string]
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				r := get(ctx, p, byID("default", "alpha"))
				switch {
				case ctx.Err() != nil:
				case servedBy("alpha")(r):
					served.Add(1)
				default:
					failed.Add(1)
					s := r.String()
					firstFailure.CompareAndSwap(nil, &s)
				}
			}
		})
	}
	// waitServed waits until n more requests were served.
	waitServed := func(what string, n int64) {
		t.Helper()
		target := served.Load() + n
		deadline := time.Now().Add(waitTimeout)
		for served.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("%s: only %d of %d requests served", what, served.Load(), target)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitServed("before the stop", 50)
	// Killed, not stopped: a graceful stop keeps the process waiting on
	// its open watches for many seconds, while a crash is the harder case.
	if err := e.c.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	waitServed("while the API server is down", 3000)
	if r, err := http.Get("http://" + p.AdminAddr + "/readyz"); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("readyz while the API server is down: %v %v", r, err)
	}
	if err := e.c.StartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := e.c.ApplyCRDs(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitServed("after the restart", 50)

	// Changes after the restart reach the router: a new sandbox, and a
	// known one suspended.
	e.createSandbox(t, "v1beta1", "default", "after-restart", false, nil)
	eventually(t, p, "sandbox created after the restart", byID("default", "after-restart"), servedBy("after-restart"))
	e.setSuspended(t, "v1beta1", "default", "claimed", true)
	eventually(t, p, "sandbox suspended after the restart", byID("default", "claimed"), status(http.StatusServiceUnavailable, "sandbox_suspended"))

	stop()
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests to a running sandbox failed across the restart; first: %s", n, n+served.Load(), *firstFailure.Load())
	}
	t.Logf("%d requests served across the API server restart, none failed", served.Load())
}

// TestReadyOnlyOnceSynced starts the router before the Sandbox CRD
// exists: it must stay unready and answer 503 rather than 404 (it does
// not know yet), then become ready once the CRD is served.
func TestReadyOnlyOnceSynced(t *testing.T) {
	c := cluster.Start(t)
	applyRBAC(t, c)
	p := launchRouter(t, c)
	if r, err := http.Get("http://" + p.AdminAddr + "/readyz"); err != nil || r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz before any sync: %v %v", r, err)
	}
	if r := get(t.Context(), p, byID("default", "alpha")); !status(http.StatusServiceUnavailable, "router_not_ready")(r) {
		t.Fatalf("request before any sync: %v", r)
	}
	if err := c.ApplyCRDs(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r := get(t.Context(), p, byID("default", "alpha")); !status(http.StatusNotFound, "sandbox_not_found")(r) {
		t.Fatalf("unknown sandbox once synced: %v", r)
	}
}

// TestNamespaced runs the router with --namespaces and only the namespaced
// Role of deploy/rbac/namespaced: it routes in its namespace and knows
// nothing of the others.
func TestNamespaced(t *testing.T) {
	e := newEnv(t, sim.Options{}, "team-a", "team-b")
	applyNamespacedRBAC(t, e.c, "team-a")
	p := e.startRouter(t, "--namespaces", "team-a")
	e.createSandbox(t, "v1beta1", "team-a", "inside", false, nil)
	e.createSandbox(t, "v1beta1", "team-b", "outside", false, nil)
	eventually(t, p, "sandbox in the watched namespace", byID("team-a", "inside"), servedBy("inside"))
	if _, err := e.sim.WaitPod(t.Context(), "team-b", "outside", func(pi sim.PodInfo) bool { return pi.Ready }); err != nil {
		t.Fatal(err)
	}
	if r := get(t.Context(), p, byID("team-b", "outside")); !status(http.StatusNotFound, "sandbox_not_found")(r) {
		t.Fatalf("sandbox outside the watched namespaces: %v", r)
	}
}
