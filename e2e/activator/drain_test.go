package activator

import (
	"context"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// TestDrainKeepsRouting: after SIGTERM the router drains (readyz fails,
// the listeners stay open for --drain-delay, in-flight requests get
// --drain-timeout), and all that time it routes from a live cache: a
// sandbox suspended and woken again during the drain, and one moved to a
// new pod, are served correctly; a request held for a resume when the
// listeners close is still released once its pod is ready; the process
// exits 0. A second SIGTERM ends the drain delay early.
func TestDrainKeepsRouting(t *testing.T) {
	const manual = "manual" // its sim waits for MarkReady
	const ns = "drain"
	e := newEnv(t, simSpec{namespaces: []string{ns}}, simSpec{namespaces: []string{manual}, manualReady: true})
	e.createSandbox(t, ns, "napper", false, nil)
	e.createSandbox(t, ns, "mover", false, nil)
	e.createSandbox(t, manual, "late", true, nil)
	e.waitRunning(t, ns, "napper")
	moverPod := e.waitRunning(t, ns, "mover")
	p := e.startRouter(t, "--leader-election=false", "--drain-delay", "10m", "--drain-timeout", "2m")
	for _, name := range []string{"napper", "mover"} {
		if r := get(t.Context(), p, ns, name); !r.servedBy(name) {
			t.Fatalf("%s before the drain: %v", name, r)
		}
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, p, http.StatusServiceUnavailable)

	// Traffic through the whole drain delay: each reply is served by its
	// sandbox or is a clear 503; nothing hangs (the client's deadline is
	// far above any hold) or fails otherwise.
	var mu sync.Mutex
	var bad []string
	counts := map[string]int{}
	check := func(name string, r reply) {
		mu.Lock()
		defer mu.Unlock()
		counts[name]++
		if !r.servedBy(name) && !(r.Err == nil && r.Status == http.StatusServiceUnavailable) {
			bad = append(bad, name+": "+r.String())
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				check("mover", get(t.Context(), p, ns, "mover"))
				time.Sleep(5 * time.Millisecond)
			}
		})
	}

	// napper is suspended by an admin while nobody asks for it (a request
	// racing the suspension would make the router resume it at once), then
	// woken by a burst of requests through the hold path: both need the
	// resolver's view of the drain period.
	from := e.watch.len(ns, "napper")
	e.setMode(t, ns, "napper", true)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if _, err := e.watch.wait(ctx, ns, "napper", from, func(o sandboxObs) bool { return o.suspendedCond }); err != nil {
		t.Fatalf("napper never reported suspended: %v", err)
	}
	resumesBefore := metricSum(t, p, mResumes)
	woken := concurrently(20, func(int) reply { return get(t.Context(), p, ns, "napper") })
	for i, r := range woken {
		check("napper", r)
		if !r.servedBy("napper") {
			t.Errorf("request %d held for napper's resume during the drain: %v", i, r)
		}
	}
	if got := metricSum(t, p, mResumes) - resumesBefore; got != 1 {
		t.Errorf("%v resumes for napper's wake-up during the drain, want 1", got)
	}

	// mover's pod dies and comes back at a new address.
	if err := e.sims[ns].RestartPod(t.Context(), ns, "mover"); err != nil {
		t.Fatal(err)
	}
	moved := eventually(t, p, ns, "mover", "mover served by its new pod", func(r reply) bool {
		return r.servedBy("mover") && r.Pod != moverPod.Name
	})

	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d of the requests during the drain failed (%v); first: %s", len(bad), counts, bad[0])
	}
	t.Logf("requests during the drain delay: %v; napper woken: %v; mover moved: %v", counts, woken[0], moved)

	// A request held for late's resume when the listeners close.
	held := make(chan reply, 1)
	go func() { held <- get(t.Context(), p, manual, "late") }()
	waitMetric(t, p, mHeld, func(v float64) bool { return v == 1 })
	if err := p.Signal(syscall.SIGTERM); err != nil { // ends the drain delay
		t.Fatal(err)
	}
	waitListenersClosed(t, p)
	if _, err := e.sims[manual].WaitPod(t.Context(), manual, "late", func(sim.PodInfo) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sims[manual].MarkReady(t.Context(), manual, "late"); err != nil {
		t.Fatal(err)
	}
	if r := <-held; !r.servedBy("late") {
		t.Fatalf("request held across the listeners' close: %v", r)
	}
	select {
	case <-p.Exited():
	case <-time.After(waitTimeout):
		t.Fatal("the router did not exit after its drain")
	}
	if err := p.ExitErr(); err != nil {
		t.Fatalf("router exit: %v", err)
	}
}

// waitReadyz waits until the admin /readyz answers status.
func waitReadyz(t *testing.T, p *routerproc.Proc, status int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		resp, err := http.Get("http://" + p.AdminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered %d (last: %v)", status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitListenersClosed waits until the router's proxy port refuses
// connections.
func waitListenersClosed(t *testing.T, p *routerproc.Proc) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		c, err := net.DialTimeout("tcp", p.HTTPAddr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the proxy listener is still open after the second signal")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
