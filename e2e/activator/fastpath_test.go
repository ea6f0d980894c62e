package activator

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
	"github.com/sandbox-router/sandbox-router/resolver/kube"
)

// The fast path on the real API server: the sims play the kubelet's start
// sequence (address first, listening later, Ready only at a probe period),
// so that what releases a held request, the router's probe or Kubernetes'
// Ready, shows.

const (
	mReleasedOnProbe = `sandbox_router_activator_releases_total{on="probe"}`
	mReleasedOnReady = `sandbox_router_activator_releases_total{on="ready"}`
)

// pending is one request through the router, running in the background.
type pending struct {
	done chan struct{}
	r    reply
	at   time.Time // when the reply arrived
}

func send(ctx context.Context, p *routerproc.Proc, ns, name string) *pending {
	h := &pending{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.r = get(ctx, p, ns, name)
		h.at = time.Now()
	}()
	return h
}

func (h *pending) answered() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

func (h *pending) wait(tb testing.TB) reply {
	tb.Helper()
	select {
	case <-h.done:
	case <-time.After(waitTimeout):
		tb.Fatal("no reply")
	}
	return h.r
}

// waitPod waits until the sandbox's current pod satisfies cond.
func (e *env) waitPod(tb testing.TB, ns, name, what string, cond func(sim.PodInfo) bool) sim.PodInfo {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), waitTimeout)
	defer cancel()
	pod, err := e.sims[ns].WaitPod(ctx, ns, name, cond)
	if err != nil {
		tb.Fatalf("%s/%s: %s: %v", ns, name, what, err)
	}
	return pod
}

// waitStats waits until the pod's counters satisfy cond.
func (e *env) waitStats(tb testing.TB, ns, pod, what string, cond func(sim.PodStats) bool) sim.PodStats {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		st, _ := e.sims[ns].PodStats(ns, pod)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pod %s/%s: %s: last %+v", ns, pod, what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdUntilHeld sends a request and waits until the router holds it.
func holdUntilHeld(t *testing.T, p *routerproc.Proc, ns, name string) *pending {
	t.Helper()
	held := metric(t, p, mHeld)
	h := send(t.Context(), p, ns, name)
	waitMetric(t, p, mHeld, func(v float64) bool { return v > held })
	return h
}

// TestFastPath runs the fast path's cases on one API server and one
// router, each in a namespace of its own whose sim plays the kubelet as
// the case needs.
func TestFastPath(t *testing.T) {
	const (
		nsReady    = "fast-ready"
		nsInit     = "fast-init"
		nsOptOut   = "fast-optout"
		nsReplaced = "fast-replaced"
		nsWarm     = "fast-warm"
	)
	e := newEnv(t,
		simSpec{namespaces: []string{nsReady}, kubelet: &sim.Kubelet{ProbePeriod: 10 * time.Second, ManualListen: true}},
		simSpec{namespaces: []string{nsInit}, kubelet: &sim.Kubelet{ProbePeriod: 10 * time.Second, ManualInit: true}},
		simSpec{namespaces: []string{nsOptOut}, kubelet: &sim.Kubelet{ProbePeriod: 200 * time.Millisecond, ManualInit: true}},
		simSpec{namespaces: []string{nsReplaced}, kubelet: &sim.Kubelet{ProbePeriod: 10 * time.Second, ManualInit: true}},
		simSpec{namespaces: []string{nsWarm}, kubelet: &sim.Kubelet{SandboxStatusDelay: time.Hour}},
	)
	// Created before the router starts: once its caches synced it knows
	// them as suspended, and the first request is held, not a 404.
	e.createSandbox(t, nsReady, "woken", true, nil)
	e.createSandbox(t, nsInit, "slow", true, nil)
	e.createSandbox(t, nsOptOut, "careful", true, map[string]string{kube.ReleaseAnnotation: "ready"})
	e.createSandbox(t, nsReplaced, "moved", true, nil)
	p := e.startRouter(t, "--leader-election=false")

	t.Run("served before Ready", func(t *testing.T) { testServedBeforeReady(t, e, p, nsReady) })
	t.Run("waits for the app to initialise", func(t *testing.T) { testWaitsForInit(t, e, p, nsInit) })
	t.Run("opted out waits for Ready", func(t *testing.T) { testOptOut(t, e, p, nsOptOut) })
	t.Run("a replaced pod gets nothing", func(t *testing.T) { testReplacedPod(t, e, p, nsReplaced) })
	t.Run("a warm-pool claim before the Sandbox status", func(t *testing.T) { testWarmClaim(t, e, p, nsWarm) })
}

// testServedBeforeReady: with the kubelet probing every 10 s, a request
// held for a suspended sandbox is answered as soon as the new pod
// listens, by the router's own probe, not at the kubelet's next period;
// and a sandbox starting for the first time is served the same way.
func testServedBeforeReady(t *testing.T, e *env, p *routerproc.Proc, ns string) {
	phases := []string{"patch_sent", "patch_acked", "pod_seen", "address_seen", "probe_ok", "first_byte"}
	before := map[string]float64{}
	for _, ph := range phases {
		before[ph] = metric(t, p, phaseCount(ph))
	}
	for _, tc := range []struct {
		name, sandbox string
		start         func(t *testing.T) *pending
	}{
		{"resumed", "woken", func(t *testing.T) *pending { return holdUntilHeld(t, p, ns, "woken") }},
		{"first start", "fresh", func(t *testing.T) *pending {
			e.createSandbox(t, ns, "fresh", false, nil)
			// The router may not know the sandbox yet: a 404 is retried
			// until a request is held.
			for {
				held := metric(t, p, mHeld)
				h := send(t.Context(), p, ns, "fresh")
				deadline := time.Now().Add(waitTimeout)
				for !h.answered() && metric(t, p, mHeld) == held {
					if time.Now().After(deadline) {
						t.Fatal("request neither held nor answered")
					}
					time.Sleep(5 * time.Millisecond)
				}
				if !h.answered() {
					return h
				}
				if r := h.r; !r.is(http.StatusNotFound, "sandbox_not_found") {
					t.Fatalf("before the sandbox is held: %v", r)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probes := metric(t, p, mReleasedOnProbe)
			h := tc.start(t)
			// The sim's kubelet probes once at the address write, before
			// the address shows; its next probe is 10 s away.
			pod := e.waitPod(t, ns, tc.sandbox, "address written", func(pi sim.PodInfo) bool { return !pi.AddressSentAt.IsZero() })
			if err := e.sims[ns].Listen(t.Context(), ns, tc.sandbox); err != nil {
				t.Fatal(err)
			}
			r := h.wait(t)
			if !r.servedBy(tc.sandbox) || r.Pod != pod.Name {
				t.Fatalf("reply %v, want pod %s", r, pod.Name)
			}
			if got := metric(t, p, mReleasedOnProbe) - probes; got != 1 {
				t.Fatalf("releases on probe: %v more, want 1", got)
			}
			now, _ := e.sims[ns].PodInfo(ns, tc.sandbox)
			t.Logf("first byte %v after the server listened (pod Ready then: %v)", h.at.Sub(now.ListeningAt), now.Ready)
		})
	}
	for _, ph := range phases {
		if got := metric(t, p, phaseCount(ph)) - before[ph]; got < 1 {
			t.Errorf("phase %s not observed", ph)
		}
	}
}

func phaseCount(phase string) string {
	return `sandbox_router_activator_wake_phase_seconds_count{phase="` + phase + `"}`
}

// testWaitsForInit: a pod that listens but whose HTTP readiness probe
// fails until the app is initialised gets no request before.
func testWaitsForInit(t *testing.T, e *env, p *routerproc.Proc, ns string) {
	h := holdUntilHeld(t, p, ns, "slow")
	pod := e.waitPod(t, ns, "slow", "listening", func(pi sim.PodInfo) bool { return !pi.ListeningAt.IsZero() })
	e.waitStats(t, ns, pod.Name, "the router probes the readiness path", func(s sim.PodStats) bool { return s.OtherProbes >= 3 })
	if h.answered() {
		t.Fatalf("answered while the readiness probe fails: %v", h.r)
	}
	if err := e.sims[ns].Initialise(ns, "slow"); err != nil {
		t.Fatal(err)
	}
	if r := h.wait(t); !r.servedBy("slow") || r.Pod != pod.Name {
		t.Fatalf("reply %v", r)
	}
	st, _ := e.sims[ns].PodStats(ns, pod.Name)
	if st.EarlyRequests != 0 || st.Requests == 0 {
		t.Fatalf("pod counters %+v: a request before the app was initialised", st)
	}
}

// testOptOut: a sandbox annotated release-on: ready is not probed by the
// router; its request waits for the pod's Ready status.
func testOptOut(t *testing.T, e *env, p *routerproc.Proc, ns string) {
	readies := metric(t, p, mReleasedOnReady)
	addresses := metric(t, p, phaseCount("address_seen"))
	h := holdUntilHeld(t, p, ns, "careful")
	pod := e.waitPod(t, ns, "careful", "listening", func(pi sim.PodInfo) bool { return !pi.ListeningAt.IsZero() })
	waitMetric(t, p, phaseCount("address_seen"), func(v float64) bool { return v > addresses })
	// The kubelet probes (and fails) while the router, which knows the
	// address, waits.
	e.waitStats(t, ns, pod.Name, "the kubelet probes", func(s sim.PodStats) bool { return s.KubeletProbes >= 2 })
	if h.answered() {
		t.Fatalf("answered before Ready: %v", h.r)
	}
	if err := e.sims[ns].Initialise(ns, "careful"); err != nil {
		t.Fatal(err)
	}
	if r := h.wait(t); !r.servedBy("careful") {
		t.Fatalf("reply %v", r)
	}
	st, _ := e.sims[ns].PodStats(ns, pod.Name)
	// The router may see the Ready write before the sim's own write call
	// returns and records it.
	ready := e.waitPod(t, ns, "careful", "Ready recorded", func(pi sim.PodInfo) bool { return pi.Ready })
	if st.OtherProbes != 0 {
		t.Fatalf("the router probed an opted-out pod %d times", st.OtherProbes)
	}
	if st.FirstRequestAt.Before(ready.ReadySentAt) {
		t.Fatalf("request at %v, before the Ready write was sent at %v", st.FirstRequestAt, ready.ReadySentAt)
	}
	if got := metric(t, p, mReleasedOnReady) - readies; got != 1 {
		t.Fatalf("releases on ready: %v more, want 1", got)
	}
}

// testReplacedPod: a pod replaced while the router probes it gets no
// request, even once its probe would pass; the replacement serves.
func testReplacedPod(t *testing.T, e *env, p *routerproc.Proc, ns string) {
	h := holdUntilHeld(t, p, ns, "moved")
	first := e.waitPod(t, ns, "moved", "listening", func(pi sim.PodInfo) bool { return !pi.ListeningAt.IsZero() })
	e.waitStats(t, ns, first.Name, "the router probes the first pod", func(s sim.PodStats) bool { return s.OtherProbes >= 1 })

	old, err := e.sims[ns].ReplacePod(t.Context(), ns, "moved")
	if err != nil {
		t.Fatal(err)
	}
	if old.Name != first.Name {
		t.Fatalf("replaced %s, want %s", old.Name, first.Name)
	}
	second := e.waitPod(t, ns, "moved", "a new pod", func(pi sim.PodInfo) bool { return pi.Name != first.Name && !pi.ListeningAt.IsZero() })
	e.waitStats(t, ns, second.Name, "the router probes the new pod", func(s sim.PodStats) bool { return s.OtherProbes >= 1 })
	// The old pod's probe would pass from now on; the router must not
	// go back to it.
	if err := e.sims[ns].InitialisePod(ns, first.Name); err != nil {
		t.Fatal(err)
	}
	now, _ := e.sims[ns].PodStats(ns, second.Name)
	e.waitStats(t, ns, second.Name, "the router keeps probing the new pod", func(s sim.PodStats) bool { return s.OtherProbes >= now.OtherProbes+3 })
	if h.answered() {
		t.Fatalf("answered while the current pod is not initialised: %v", h.r)
	}
	if err := e.sims[ns].Initialise(ns, "moved"); err != nil {
		t.Fatal(err)
	}
	if r := h.wait(t); !r.servedBy("moved") || r.Pod != second.Name {
		t.Fatalf("reply %v, want pod %s", r, second.Name)
	}
	if st, _ := e.sims[ns].PodStats(ns, first.Name); st.Requests != 0 {
		t.Fatalf("the replaced pod got %d requests", st.Requests)
	}
}

// testWarmClaim: a sandbox that adopts a running warm-pool pod is served
// at once, though the controller has not written the Sandbox's status yet
// (here: not for an hour).
func testWarmClaim(t *testing.T, e *env, p *routerproc.Proc, ns string) {
	warm, _, _, err := e.sims[ns].CreateWarmPoolPod(t.Context(), ns, "pool")
	if err != nil {
		t.Fatal(err)
	}
	e.createSandbox(t, ns, "claimed", false, map[string]string{sim.AnnotationAdopt: warm})
	r := eventually(t, p, ns, "claimed", "served by the adopted pod", func(r reply) bool { return r.servedBy("claimed") })
	if r.Pod != warm {
		t.Fatalf("served by %s, want the warm pod %s", r.Pod, warm)
	}
	if o, _ := e.watch.last(ns, "claimed"); o.readyCond {
		t.Fatal("the Sandbox status says Ready: the test shows nothing")
	}
}
