package activator

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// episode is one wake-up of one sandbox, shared by every request held for
// it: whatever their number, it sends one resume and probes each requested
// port once. A single goroutine (run) drives it from the resolver's
// notifications; the waiters only wait on its channels.
type episode struct {
	a       *Activator
	key     resolver.Key // namespace and name
	started time.Time    // the first held request's arrival

	// Under a.mu.
	waiters int
	ports   map[uint16]*portWait

	poked     chan struct{} // cap 1: a waiter came or went, a port was added
	failed    chan struct{} // closed with err set when the wake-up failed
	err       error
	releasing chan struct{} // cap ReleaseConcurrency: released requests awaiting their head
	first     sync.Once
}

// portWait is the readiness of one port: ready is closed once a connect
// to it succeeded, with result set.
type portWait struct {
	ready  chan struct{}
	result resolver.Result
	done   bool // under a.mu
	refs   int  // waiters for the port, under a.mu
}

func newEpisode(a *Activator, key resolver.Key) *episode {
	return &episode{
		a:         a,
		key:       key,
		started:   time.Now(),
		ports:     make(map[uint16]*portWait, 1),
		poked:     make(chan struct{}, 1),
		failed:    make(chan struct{}),
		releasing: make(chan struct{}, a.opts.ReleaseConcurrency),
	}
}

// want registers interest in port. Called under a.mu.
func (ep *episode) want(port uint16) *portWait {
	pw := ep.ports[port]
	if pw == nil {
		pw = &portWait{ready: make(chan struct{})}
		ep.ports[port] = pw
		ep.poke()
	}
	pw.refs++
	return pw
}

// unwant drops a waiter's interest in port; a port nobody waits for any
// longer is not probed. Called under a.mu.
func (ep *episode) unwant(port uint16) {
	if pw := ep.ports[port]; pw != nil {
		if pw.refs--; pw.refs == 0 && !pw.done {
			delete(ep.ports, port)
		}
	}
}

// hasWaiters reports whether any request still waits.
func (ep *episode) hasWaiters() bool {
	ep.a.mu.Lock()
	defer ep.a.mu.Unlock()
	return ep.waiters > 0
}

func (ep *episode) poke() {
	select {
	case ep.poked <- struct{}{}:
	default:
	}
}

func (ep *episode) releaseSlot() { <-ep.releasing }

// released records the first release: the resume latency as a client
// sees it, from the first held request to the sandbox taking requests.
func (ep *episode) released(m *Metrics) {
	ep.first.Do(func() { m.resumeLatency.Observe(time.Since(ep.started).Seconds()) })
}

// resumeState is the single flight of resume patches of one episode.
type resumeState struct {
	inFlight bool
	sent     bool // a resume succeeded in this episode
	// awake: the sandbox was seen starting or running after the last
	// resume; seeing it suspended again means someone suspended it anew,
	// and only then is a second resume sent.
	awake bool
	done  chan error
}

func (ep *episode) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rs := resumeState{done: make(chan error, 1)}
	var retry *time.Timer
	backoff := 5 * time.Millisecond
	for {
		changed, stopWaiting := ep.a.opts.Sandboxes.Changed(ep.key)
		res := ep.a.opts.Sandboxes.Lookup(ep.key)
		var retryC <-chan time.Time
		switch res.State {
		case resolver.StateUnknown:
			stopWaiting()
			ep.fail(errDeleted)
			return
		case resolver.StateFinished:
			stopWaiting()
			ep.fail(errFinished)
			return
		case resolver.StateSuspended, resolver.StateSuspending:
			// Suspending too: a request that races a suspension resumes
			// the sandbox at once rather than after the pod is gone.
			// Only for someone: a resume retried for nobody would spend
			// the API budget for as long as the API server fails.
			if !rs.inFlight && (!rs.sent || rs.awake) && ep.hasWaiters() {
				rs.inFlight, rs.awake = true, false
				go ep.resume(ctx, rs.done)
			}
		case resolver.StateStarting:
			rs.awake = true
		case resolver.StateRunning:
			rs.awake = true
			if ep.probe(ctx, res) {
				backoff = 5 * time.Millisecond
			} else {
				if retry == nil {
					retry = time.NewTimer(backoff)
				} else {
					retry.Reset(backoff)
				}
				retryC = retry.C
				backoff = min(2*backoff, 250*time.Millisecond)
			}
		}
		if ep.finishIfDone(res.State == resolver.StateRunning, rs.inFlight) {
			stopWaiting()
			return
		}
		select {
		case <-changed:
		case <-ep.poked:
		case <-retryC:
		case err := <-rs.done:
			rs.inFlight = false
			if err == nil {
				rs.sent = true
			} else if permanent(err) {
				stopWaiting()
				if errors.Is(err, ErrNotFound) {
					ep.fail(errDeleted)
				} else {
					ep.fail(errRefused)
				}
				return
			}
		}
		stopWaiting()
	}
}

// finishIfDone ends the episode when every wanted port is ready, or when
// nobody waits any longer and no resume is in flight (the sandbox goes on
// resuming in the cluster; a later request starts a new episode).
func (ep *episode) finishIfDone(running, resuming bool) bool {
	a := ep.a
	a.mu.Lock()
	defer a.mu.Unlock()
	allReady := running
	for _, pw := range ep.ports {
		allReady = allReady && pw.done
	}
	if !allReady && (ep.waiters > 0 || resuming) {
		return false
	}
	a.finish(ep)
	return true
}

func (ep *episode) fail(err error) {
	a := ep.a
	a.mu.Lock()
	defer a.mu.Unlock()
	ep.err = err
	close(ep.failed)
	a.finish(ep)
}

// resume sends the resume patch, retrying transient errors with backoff
// until it succeeds, fails for good, or the episode ends.
func (ep *episode) resume(ctx context.Context, done chan<- error) {
	backoff := 50 * time.Millisecond
	for {
		err := ep.a.opts.Waker.Resume(ctx, ep.key)
		if err != nil && !permanent(err) && !ep.hasWaiters() {
			// Everybody left: stop retrying. The episode ends, and the
			// next request starts a new one.
			ep.a.metrics.resumes.WithLabelValues(resultLabel(err)).Inc()
			done <- err
			return
		}
		if ctx.Err() != nil {
			done <- ctx.Err()
			return
		}
		ep.a.metrics.resumes.WithLabelValues(resultLabel(err)).Inc()
		if err == nil || permanent(err) {
			if err != nil {
				ep.a.log.Warn("resume refused", "namespace", ep.key.Namespace, "sandbox", ep.key.Name, "err", err)
			}
			done <- err
			return
		}
		ep.a.log.Info("resume failed, retrying", "namespace", ep.key.Namespace, "sandbox", ep.key.Name, "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			done <- ctx.Err()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// probe connects to each wanted port of the running pod that is not ready
// yet and releases the waiters of those that accept. It reports whether
// all wanted ports are ready.
func (ep *episode) probe(ctx context.Context, res resolver.Result) bool {
	a := ep.a
	a.mu.Lock()
	var pending []uint16
	for port, pw := range ep.ports {
		if !pw.done {
			pending = append(pending, port)
		}
	}
	a.mu.Unlock()
	all := true
	for _, port := range pending {
		if err := probePort(ctx, a.opts.Dial, res.PodIP, port, a.opts.ProbeTimeout); err != nil {
			a.log.Debug("probe failed", "namespace", ep.key.Namespace, "sandbox", ep.key.Name, "port", port, "err", err)
			all = false
			continue
		}
		a.mu.Lock()
		if pw := ep.ports[port]; pw != nil && !pw.done { // its waiters may have left meanwhile
			pw.result, pw.done = res, true
			close(pw.ready)
		}
		a.mu.Unlock()
	}
	return all
}
