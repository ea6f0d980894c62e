package activator

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
)

// idleTimeout is the sandboxes' idle timeout (their annotation) in
// TestIdleTwoReplicas: short, so that three of them pass quickly.
const idleTimeout = 3 * time.Second

// TestIdleTwoReplicas runs two routers behind one Lease and sends traffic
// through the one that does not lead, so the leader (which decides about
// suspension) learns of it only through the last-activity annotation the
// other writes.
func TestIdleTwoReplicas(t *testing.T) {
	const ns = "idle"
	e := newEnv(t, simSpec{namespaces: []string{ns}})
	ids := []string{"replica-a", "replica-b"}
	procs := make([]*routerproc.Proc, len(ids))
	for i, id := range ids {
		procs[i] = e.startRouter(t, "--leader-election-identity", id,
			"--leader-lease-duration", "2s", "--leader-renew-deadline", "1500ms", "--leader-retry-period", "250ms",
			"--activity-tick", "200ms")
	}
	li := e.waitLeader(t, ids, procs, "")
	leader, follower := procs[li], procs[1-li]
	t.Logf("leader %s, follower %s", ids[li], ids[1-li])
	ann := map[string]string{idleAnnotation: idleTimeout.String()}

	t.Run("traffic through the follower keeps it running", func(t *testing.T) {
		e.createSandbox(t, ns, "busy", false, ann)
		eventually(t, follower, ns, "busy", "busy through the follower", func(r reply) bool { return r.servedBy("busy") })
		suspensions := metric(t, leader, mSuspensions)

		// Requests every 100ms for three idle timeouts, all through the
		// follower; meanwhile the sandbox must stay running.
		stop := make(chan struct{})
		var lastSent time.Time
		var trafficErr error
		var wg sync.WaitGroup
		wg.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				lastSent = time.Now()
				if r := get(t.Context(), follower, ns, "busy"); !r.servedBy("busy") {
					trafficErr = fmt.Errorf("request at %v: %v", lastSent, r)
					return
				}
			}
		})
		e.watch.holds(t, ns, "busy", 3*idleTimeout, "suspended while traffic flowed through the follower", isSuspended)
		close(stop)
		wg.Wait()
		if trafficErr != nil {
			t.Fatal(trafficErr)
		}
		if o, _ := e.watch.last(ns, "busy"); o.lastActivity == "" {
			t.Errorf("no last-activity annotation after %v of traffic", 3*idleTimeout)
		}
		if w := metric(t, follower, mActivityOK); w == 0 {
			t.Errorf("the follower wrote no activity")
		}
		if w := metric(t, leader, mActivityOK); w != 0 {
			t.Errorf("the leader, which saw no traffic, wrote %v activity reports", w)
		}

		// Traffic stopped: suspended after the timeout, by the leader.
		o := waitSuspended(t, e, ns, "busy", 0)
		if idle := o.at.Sub(lastSent); idle < idleTimeout {
			t.Errorf("suspended %v after the last request was sent, before the idle timeout %v", idle, idleTimeout)
		} else {
			t.Logf("suspended %v after the last request was sent (idle timeout %v)", idle.Round(time.Millisecond), idleTimeout)
		}
		waitMetric(t, leader, mSuspensions, func(v float64) bool { return v == suspensions+1 })
		if s := metric(t, follower, mSuspensions); s != 0 {
			t.Errorf("the follower suspended %v sandboxes", s)
		}
	})

	t.Run("an open WebSocket keeps it running, and requests racing the suspension are served", func(t *testing.T) {
		e.createSandbox(t, ns, "chatty", false, ann)
		before := eventually(t, follower, ns, "chatty", "chatty through the follower", func(r reply) bool { return r.servedBy("chatty") })
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		h := http.Header{}
		setKey(h, ns, "chatty")
		ws, _, err := websocket.Dial(ctx, "ws://"+follower.HTTPAddr+"/ws", &websocket.DialOptions{HTTPHeader: h})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		echo := func(msg string) {
			t.Helper()
			if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			if _, got, err := ws.Read(ctx); err != nil || string(got) != msg {
				t.Fatalf("echo %q, %v; want %q", got, err, msg)
			}
		}
		echo("open")
		// Silent for three timeouts: the open connection alone is the
		// activity.
		e.watch.holds(t, ns, "chatty", 3*idleTimeout, "suspended with a WebSocket open through the follower", isSuspended)
		echo("still open")

		// Close it, and as soon as the watch sees the suspension, send
		// requests back to back through both replicas until one is served
		// by a new pod: each must be served, whether it still reached the
		// old pod, raced its stop, or was held for the resume.
		from := e.watch.len(ns, "chatty")
		closing := time.Now() // the connection's activity ends after this
		ws.Close(websocket.StatusNormalClosure, "")
		o := waitSuspended(t, e, ns, "chatty", from)
		if idle := o.at.Sub(closing); idle < idleTimeout {
			t.Errorf("suspended %v after the WebSocket closed, before the idle timeout %v", idle, idleTimeout)
		}
		oldPod := 0
		for i := 0; ; i++ {
			via := procs[i%2]
			r := get(t.Context(), via, ns, "chatty")
			if !r.servedBy("chatty") {
				t.Fatalf("request %d after the suspension (%v after it was seen): %v", i, time.Since(o.at), r)
			}
			if r.Pod == before.Pod {
				oldPod++
				if i >= 1000 {
					t.Fatalf("%d requests after the suspension all served by the old pod", i)
				}
				continue
			}
			break
		}
		t.Logf("after the suspension: %d requests served by the old pod, then one held and served by the new pod", oldPod)
	})

	t.Run("requests flowing through both replicas across suspensions are all served", func(t *testing.T) {
		// No idle timeout here: the suspensions are an admin's, at
		// moments the test picks, in the middle of the traffic.
		e.createSandbox(t, ns, "stormy", false, nil)
		first := eventually(t, follower, ns, "stormy", "stormy", func(r reply) bool { return r.servedBy("stormy") })
		eventually(t, leader, ns, "stormy", "stormy", func(r reply) bool { return r.servedBy("stormy") })
		st := startStorm(t, procs, ns, "stormy", 8)
		current := first.Pod
		suspensions := 0
		const rounds = 3
		for round := range rounds {
			st.waitServed(t, current, 50)
			// The routers resume the sandbox within milliseconds, so
			// the sim (level-triggered, like a real controller) may see
			// suspension and resume as one change and leave the pod
			// alone: then there was no race, and the admin suspends it
			// again.
			next := ""
			for attempt := 1; next == ""; attempt++ {
				if attempt > 5 {
					t.Fatalf("round %d: in %d suspensions the sim never stopped the pod", round, attempt-1)
				}
				from := e.watch.len(ns, "stormy")
				e.setMode(t, ns, "stormy", true)
				suspensions++
				if next = st.waitNewPod(t, 5*time.Second); next != "" {
					break
				}
				now, cancel := context.WithCancel(t.Context())
				cancel() // look at the states seen so far only
				if _, err := e.watch.wait(now, ns, "stormy", from, func(o sandboxObs) bool { return o.suspendedCond }); err != nil {
					t.Logf("round %d: the sim saw suspension %d and the resume as one change; once more", round, attempt)
					continue
				}
				if next = st.waitNewPod(t, waitTimeout); next == "" {
					t.Fatalf("round %d: the sim stopped pod %s, but no request was served by a new one within %v", round, current, waitTimeout)
				}
			}
			current = next
		}
		st.waitServed(t, current, 50)
		total, byPod, failures := st.stop()
		for i, p := range procs {
			m, _ := scrape(p)
			var counts []string
			for k, v := range m {
				if v != 0 && (strings.HasPrefix(k, "sandbox_router_upstream_errors_total") || strings.HasPrefix(k, "sandbox_router_upstream_retries_total")) {
					counts = append(counts, fmt.Sprintf("%s=%v", strings.TrimPrefix(k, "sandbox_router_"), v))
				}
			}
			slices.Sort(counts)
			t.Logf("%s (%s): %v", ids[i], p.HTTPAddr, counts)
		}
		if len(failures) > 0 {
			t.Fatalf("%d of %d requests failed across %d suspensions; first: %v", len(failures), total, suspensions, failures[:min(len(failures), 10)])
		}
		resumes := len(e.waitRouterPatches(t, ns, "stormy", rounds))
		t.Logf("%d requests, all served, by pod: %v; %d suspensions, %d resume patches (two replicas, each its own)", total, byPod, suspensions, resumes)
	})

	t.Run("the leader's death hands the duty over", func(t *testing.T) {
		leaderID := ids[li]
		e.kill(leader)
		e.createSandbox(t, ns, "orphan", false, ann)
		ni := e.waitLeader(t, ids, procs, leaderID)
		t.Logf("new leader %s", ids[ni])
		waitSuspended(t, e, ns, "orphan", 0)
		// Counted once its suspend call returned, which may be just
		// after the watch saw the change.
		waitMetric(t, procs[ni], mSuspensions, func(v float64) bool { return v >= 1 })
	})
}

// waitSuspended waits until the watch sees the sandbox's spec suspended,
// from state index from on.
func waitSuspended(t *testing.T, e *env, ns, name string, from int) sandboxObs {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	i, err := e.watch.wait(ctx, ns, name, from, isSuspended)
	if err != nil {
		t.Fatalf("%s/%s never suspended: %v", ns, name, err)
	}
	return e.watch.at(ns, name, i)
}

// storm sends requests for one sandbox back to back from several workers,
// spread over the routers, and records which pod served each and which
// failed.
type storm struct {
	wg       sync.WaitGroup
	done     chan struct{}
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced at every reply
	byPod    map[string]int
	failures []string
	total    int
}

func startStorm(t *testing.T, procs []*routerproc.Proc, ns, name string, workers int) *storm {
	st := &storm{done: make(chan struct{}), changed: make(chan struct{}), byPod: map[string]int{}}
	start := time.Now()
	for w := range workers {
		via := procs[w%len(procs)]
		st.wg.Go(func() {
			for {
				select {
				case <-st.done:
					return
				default:
				}
				sent := time.Now()
				r := get(t.Context(), via, ns, name)
				st.mu.Lock()
				st.total++
				if r.servedBy(name) {
					st.byPod[r.Pod]++
				} else {
					st.failures = append(st.failures, fmt.Sprintf("sent at +%v through %s: %v", sent.Sub(start).Round(time.Millisecond), via.HTTPAddr, r))
				}
				close(st.changed)
				st.changed = make(chan struct{})
				st.mu.Unlock()
			}
		})
	}
	return st
}

// waitServed waits until pod has served n requests, or a request failed.
func (st *storm) waitServed(t *testing.T, pod string, n int) {
	t.Helper()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		st.mu.Lock()
		got, failed, ch := st.byPod[pod], len(st.failures), st.changed
		st.mu.Unlock()
		if got >= n || failed > 0 {
			return
		}
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("pod %s served only %d requests in %v", pod, got, waitTimeout)
		}
	}
}

// waitNewPod waits up to d for a request served by a pod that had served
// none when it was called, and returns that pod ("" if none).
func (st *storm) waitNewPod(t *testing.T, d time.Duration) string {
	t.Helper()
	st.mu.Lock()
	known := maps.Clone(st.byPod)
	st.mu.Unlock()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		st.mu.Lock()
		ch := st.changed
		for pod := range st.byPod {
			if _, ok := known[pod]; !ok {
				st.mu.Unlock()
				return pod
			}
		}
		failed := len(st.failures) > 0
		st.mu.Unlock()
		if failed {
			return "failed"
		}
		select {
		case <-ch:
		case <-timeout.C:
			return ""
		}
	}
}

// stop ends the storm and returns what it saw.
func (st *storm) stop() (total int, byPod map[string]int, failures []string) {
	close(st.done)
	st.wg.Wait()
	return st.total, st.byPod, st.failures
}
