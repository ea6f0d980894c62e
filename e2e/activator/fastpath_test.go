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

// TestFastPathServesBeforeReady: with the kubelet probing every 10 s, a
// request held for a suspended sandbox is answered as soon as the new pod
// listens, by the router's own probe, not at the kubelet's next period;
// and a sandbox starting for the first time is served the same way.
func TestFastPathServesBeforeReady(t *testing.T) {
	const ns = "fast-ready"
	e := newEnv(t, simSpec{namespaces: []string{ns}, kubelet: &sim.Kubelet{ProbePeriod: 10 * time.Second, ManualListen: true}})
	e.createSandbox(t, ns, "woken", true, nil)
	p := e.startRouter(t, "--leader-election=false")

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
			sandbox := tc.sandbox
			probes := metric(t, p, mReleasedOnProbe)
			h := tc.start(t)
			pod := e.waitPod(t, ns, sandbox, "address written", func(pi sim.PodInfo) bool { return !pi.AddressSentAt.IsZero() })
			if err := e.sims[ns].Listen(t.Context(), ns, sandbox); err != nil {
				t.Fatal(err)
			}
			r := h.wait(t)
			if !r.servedBy(sandbox) || r.Pod != pod.Name {
				t.Fatalf("reply %v, want pod %s", r, pod.Name)
			}
			// Released by the probe, not by Ready: the kubelet's next
			// probe is 10 s after the address was written.
			if got := metric(t, p, mReleasedOnProbe) - probes; got != 1 {
				t.Fatalf("releases on probe: %v more, want 1", got)
			}
			now, _ := e.sims[ns].PodInfo(ns, sandbox)
			t.Logf("first byte %v after the server listened (pod Ready then: %v)", h.at.Sub(now.ListeningAt), now.Ready)
		})
	}
	for _, ph := range []string{"patch_sent", "patch_acked", "pod_seen", "address_seen", "probe_ok", "first_byte"} {
		if got := metric(t, p, `sandbox_router_activator_wake_phase_seconds_count{phase="`+ph+`"}`); got < 1 {
			t.Errorf("phase %s not observed", ph)
		}
	}
}

// TestFastPathWaitsForInit: a pod that listens but whose HTTP readiness
// probe fails until the app is initialised gets no request before.
func TestFastPathWaitsForInit(t *testing.T) {
	const ns = "fast-init"
	e := newEnv(t, simSpec{namespaces: []string{ns}, kubelet: &sim.Kubelet{ProbePeriod: 10 * time.Second, ManualInit: true}})
	e.createSandbox(t, ns, "slow", true, nil)
	p := e.startRouter(t, "--leader-election=false")
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

// TestFastPathOptOut: a sandbox annotated release-on: ready is not probed
// by the router; its request waits for the pod's Ready status.
func TestFastPathOptOut(t *testing.T) {
	const ns = "fast-optout"
	e := newEnv(t, simSpec{namespaces: []string{ns}, kubelet: &sim.Kubelet{ProbePeriod: 200 * time.Millisecond, ManualInit: true}})
	e.createSandbox(t, ns, "careful", true, map[string]string{kube.ReleaseAnnotation: "ready"})
	p := e.startRouter(t, "--leader-election=false")
	readies := metric(t, p, mReleasedOnReady)
	h := holdUntilHeld(t, p, ns, "careful")
	pod := e.waitPod(t, ns, "careful", "listening", func(pi sim.PodInfo) bool { return !pi.ListeningAt.IsZero() })
	waitMetric(t, p, `sandbox_router_activator_wake_phase_seconds_count{phase="address_seen"}`, func(v float64) bool { return v >= 1 })
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
	ready, _ := e.sims[ns].PodInfo(ns, "careful")
	if st.OtherProbes != 0 {
		t.Fatalf("the router probed an opted-out pod %d times", st.OtherProbes)
	}
	if !ready.Ready || st.FirstRequestAt.Before(ready.ReadySentAt) {
		t.Fatalf("request at %v, Ready written at %v (%v)", st.FirstRequestAt, ready.ReadySentAt, ready.Ready)
	}
	if got := metric(t, p, mReleasedOnReady) - readies; got != 1 {
		t.Fatalf("releases on ready: %v more, want 1", got)
	}
}

// TestFastPathReplacedPod: a pod replaced while the router probes it gets
// no request, even once its probe would pass; the replacement serves.
func TestFastPathReplacedPod(t *testing.T) {
	const ns = "fast-replaced"
	e := newEnv(t, simSpec{namespaces: []string{ns}, kubelet: &sim.Kubelet{ProbePeriod: 10 * time.Second, ManualInit: true}})
	e.createSandbox(t, ns, "moved", true, nil)
	p := e.startRouter(t, "--leader-election=false")
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

// TestWarmClaimBeforeSandboxStatus: a sandbox that adopts a running
// warm-pool pod is served at once, though the controller has not written
// the Sandbox's status yet (here: not for an hour).
func TestWarmClaimBeforeSandboxStatus(t *testing.T) {
	const ns = "fast-warm"
	e := newEnv(t, simSpec{namespaces: []string{ns}, kubelet: &sim.Kubelet{SandboxStatusDelay: time.Hour}})
	p := e.startRouter(t, "--leader-election=false")
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
