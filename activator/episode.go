package activator

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// episode is one wake-up of one sandbox, shared by every request held for
// it: whatever their number, it sends one resume and probes each requested
// port once. A single goroutine (run) drives it from the resolver's
// notifications; the waiters only wait on its channels.
//
// Requests are released at the first of two signals: the router's own
// probe of the new pod passes (the fast path: the pod's readiness probes,
// run as soon as the pod has an address, then a connect to the port), or
// Kubernetes calls the pod Ready. After a fast release the episode stays
// until Ready is seen, so that requests arriving meanwhile go straight to
// the probed pod, and so that the wake-up's timeline is complete.
type episode struct {
	a       *Activator
	key     resolver.Key // namespace and name
	started time.Time    // the first held request's arrival
	// lingerFor bounds how long an episode released on a probe waits to
	// see Ready: the sandbox's hold timeout.
	lingerFor time.Duration
	tl        *timeline

	// Under a.mu.
	waiters int
	ports   map[uint16]*portWait
	// early: ports were released to the pod earlyPod at earlyIP before
	// Kubernetes called it Ready, last at earlyAt.
	early    bool
	earlyPod string
	earlyIP  netip.Addr
	earlyAt  time.Time

	poked     chan struct{} // cap 1: a waiter came or went, a port was added
	failed    chan struct{} // closed with err set when the wake-up failed
	err       error
	releasing chan struct{} // cap ReleaseConcurrency: released requests awaiting their head
	first     sync.Once

	// Owned by run: the pod probed on the fast path, whether its
	// readiness probes passed, and since when it is probed.
	cand      resolver.Candidate
	candReady bool
	candSince time.Time
	candFails int
}

// portWait is the readiness of one port: ready is closed once a connect
// to it succeeded, with result set.
type portWait struct {
	ready  chan struct{}
	result resolver.Result
	done   bool // under a.mu
	refs   int  // waiters for the port, under a.mu
}

func newEpisode(a *Activator, key resolver.Key, lingerFor time.Duration) *episode {
	now := time.Now()
	return &episode{
		a:         a,
		key:       key,
		started:   now,
		lingerFor: lingerFor,
		tl:        newTimeline(now, a.metrics, a.log, key.Namespace, key.Name),
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

// unwant drops a waiter's interest in pw; a port nobody waits for any
// longer is not probed. A pw withdrawn by forget is no longer in ports.
// Called under a.mu.
func (ep *episode) unwant(port uint16, pw *portWait) {
	if ep.ports[port] != pw {
		return
	}
	if pw.refs--; pw.refs == 0 && !pw.done {
		delete(ep.ports, port)
	}
}

// forget withdraws a fast release: the pod it went to is no longer the
// sandbox's candidate (replaced, deleted, suspended), so requests that
// arrive from now on wait for the next one. Those already released keep
// their answer, as they would had the pod died just after Ready.
func (ep *episode) forget() {
	ep.a.mu.Lock()
	defer ep.a.mu.Unlock()
	ep.forgetLocked()
}

// forgetLocked is forget under a.mu.
func (ep *episode) forgetLocked() {
	if !ep.early {
		return
	}
	ep.early = false
	for port, pw := range ep.ports {
		if pw.done {
			delete(ep.ports, port)
		}
	}
}

func (ep *episode) releasedEarly() bool {
	ep.a.mu.Lock()
	defer ep.a.mu.Unlock()
	return ep.early
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

// releaseSlot is called by each released request once it has its
// response head (or failed): the first one is the wake-up's first byte.
func (ep *episode) releaseSlot() {
	ep.tl.mark(phaseFirstByte)
	<-ep.releasing
}

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

// earlyTrust is how long a release on a probe serves the requests that
// join the episode after it without a new connect: a server that died
// since (its container restarting keeps the pod and its address) gets
// requests for at most that long.
const earlyTrust = time.Second

// Fast-path probe cadence: every fastProbeInterval (Options.ProbeInterval)
// while the pod has had its address for less than fastProbeFor, then
// every slowProbeInterval. A pod that takes longer than that to listen is
// slow to start anyway; probing it 100 times a second would only cost.
const (
	fastProbeFor      = 10 * time.Second
	slowProbeInterval = 100 * time.Millisecond
)

func (ep *episode) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer ep.tl.end()
	rs := resumeState{done: make(chan error, 1)}
	var retry, linger *time.Timer
	var lingerC <-chan time.Time
	lingerOver := false
	backoff := 5 * time.Millisecond
	for {
		changed, stopWaiting := ep.a.opts.Sandboxes.Changed(ep.key)
		res := ep.a.opts.Sandboxes.Lookup(ep.key)
		again := time.Duration(-1) // when to look again without a change; <0: at the next change
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
			ep.forget()
			// Suspending too: a request that races a suspension resumes
			// the sandbox at once rather than after the pod is gone.
			// Only for someone: a resume retried for nobody would spend
			// the API budget for as long as the API server fails.
			if !rs.inFlight && (!rs.sent || rs.awake) && ep.hasWaiters() {
				rs.inFlight, rs.awake = true, false
				ep.tl.mark(phasePatchSent)
				go ep.resume(ctx, rs.done)
			}
		case resolver.StateStarting:
			rs.awake = true
			again = ep.starting(ctx, res, changed)
		case resolver.StateRunning:
			rs.awake = true
			for _, p := range [...]phase{phasePodSeen, phaseAddressSeen, phaseReadySeen} {
				ep.tl.mark(p)
			}
			if ep.cand.PodIP != res.PodIP {
				ep.forget() // released early to a pod that is not the one Ready
			}
			if ep.probe(ctx, res, nil, releaseOnReady) {
				backoff = 5 * time.Millisecond
			} else {
				again = backoff
				backoff = min(2*backoff, 250*time.Millisecond)
			}
		}
		if linger == nil && ep.releasedEarly() {
			linger = time.NewTimer(ep.lingerFor)
			defer linger.Stop()
			lingerC = linger.C
		}
		if ep.finishIfDone(res.State == resolver.StateRunning, rs.inFlight, lingerOver) {
			stopWaiting()
			return
		}
		var retryC <-chan time.Time
		if again >= 0 {
			if retry == nil {
				retry = time.NewTimer(again)
				defer retry.Stop()
			} else {
				retry.Reset(again)
			}
			retryC = retry.C
		}
		select {
		case <-changed:
		case <-ep.poked:
		case <-retryC:
		case <-lingerC:
			lingerOver, lingerC = true, nil
		case err := <-rs.done:
			rs.inFlight = false
			if err == nil {
				rs.sent = true
				ep.tl.mark(phasePatchAcked)
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

// starting handles a sandbox whose pod is not Ready: it times the pod's
// arrival and, unless the sandbox's requests wait for Ready, probes the
// pod and releases the waiters at the first success. It returns when to
// probe again (<0: at the next change).
func (ep *episode) starting(ctx context.Context, res resolver.Result, changed <-chan struct{}) time.Duration {
	a := ep.a
	cand, ok := a.opts.Sandboxes.Candidate(ep.key)
	if ok {
		ep.tl.mark(phasePodSeen)
		if cand.PodIP.IsValid() {
			ep.tl.mark(phaseAddressSeen)
		}
	}
	if !ok || !cand.PodIP.IsValid() || cand.Readiness.Opaque || (cand.PodIP.IsLoopback() && !a.opts.AllowLoopbackPodIP) || !ep.releaseOnProbe() {
		ep.forget()
		ep.cand = resolver.Candidate{}
		return -1
	}
	if !ep.cand.Same(&cand) {
		ep.forget()
		ep.cand, ep.candReady, ep.candSince, ep.candFails = cand, false, time.Now(), 0
	}
	if !ep.hasWaiters() {
		return -1 // nobody to release; a lingering episode has nothing to probe
	}
	if !ep.candReady {
		if err := ep.checkCandidate(ctx, changed); err != nil {
			// Only the first failure is logged: a pod is probed up to a
			// hundred times a second while it starts.
			if ep.candFails++; ep.candFails == 1 {
				a.log.Debug("probing a starting pod", "namespace", ep.key.Namespace, "sandbox", ep.key.Name, "pod", cand.Pod, "first_failure", err)
			}
			return ep.probeInterval()
		}
		ep.candReady = true
		ep.tl.mark(phaseProbeOK)
	}
	r := res
	r.State, r.PodIP, r.H2CPorts = resolver.StateRunning, cand.PodIP, cand.H2CPorts
	if ep.probe(ctx, r, ep.stillCandidate, releaseOnProbe) {
		return -1
	}
	return ep.probeInterval()
}

// releaseOnProbe reports whether the sandbox's requests may go to its pod
// before Kubernetes calls it Ready.
func (ep *episode) releaseOnProbe() bool {
	lc, ok := ep.a.opts.Sandboxes.Lifecycle(ep.key)
	return ok && ep.a.opts.Policy.release(lc) == resolver.ReleaseOnProbe
}

// checkCandidate runs the candidate's readiness probes. A change of the
// sandbox (the pod deleted, replaced, suspended) stops them at once.
func (ep *episode) checkCandidate(ctx context.Context, changed <-chan struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ep.a.prober.ready(ctx, ep.cand.PodIP, &ep.cand.Readiness)
}

// stillCandidate reports whether the probed pod is still the one the
// resolver holds for the sandbox: checked right before each release, so
// that a pod deleted or replaced while it was probed gets no request.
func (ep *episode) stillCandidate() bool {
	c, ok := ep.a.opts.Sandboxes.Candidate(ep.key)
	return ok && c.Same(&ep.cand)
}

func (ep *episode) probeInterval() time.Duration {
	if time.Since(ep.candSince) < fastProbeFor {
		return ep.a.opts.ProbeInterval
	}
	return slowProbeInterval
}

// finishIfDone ends the episode when every wanted port is ready, or when
// nobody waits any longer and no resume is in flight (the sandbox goes on
// resuming in the cluster; a later request starts a new episode). An
// episode released on a probe stays until Ready is seen or lingerOver.
func (ep *episode) finishIfDone(running, resuming, lingerOver bool) bool {
	a := ep.a
	a.mu.Lock()
	defer a.mu.Unlock()
	allReady := running || ep.early
	for _, pw := range ep.ports {
		allReady = allReady && pw.done
	}
	switch {
	case allReady && !running && !lingerOver:
		return false
	case !allReady && (ep.waiters > 0 || resuming):
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
			ep.a.events.record(ep.key, EventResumeFailed, "resume failed ("+resultLabel(err)+"); nobody waits any longer")
			done <- err
			return
		}
		if ctx.Err() != nil {
			done <- ctx.Err()
			return
		}
		ep.a.metrics.resumes.WithLabelValues(resultLabel(err)).Inc()
		switch {
		case permanent(err):
			ep.a.events.record(ep.key, EventResumeFailed, "resume refused ("+resultLabel(err)+"); held requests fail")
		case err != nil:
			ep.a.events.record(ep.key, EventResumeFailed, "resume failed ("+resultLabel(err)+"); retrying")
		}
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

// probe connects to each wanted port of the pod res names that is not
// ready yet and releases the waiters of those that accept, if still (when
// set) says the pod is still the one to use. on names the signal that
// released them. It reports whether all wanted ports are ready.
func (ep *episode) probe(ctx context.Context, res resolver.Result, still func() bool, on string) bool {
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
		if err := a.prober.connect(ctx, res.PodIP, port); err != nil {
			a.log.Debug("probe failed", "namespace", ep.key.Namespace, "sandbox", ep.key.Name, "port", port, "err", err)
			all = false
			continue
		}
		ep.tl.mark(phaseProbeOK)
		if still != nil && !still() {
			return false
		}
		a.mu.Lock()
		released := 0
		if pw := ep.ports[port]; pw != nil && !pw.done { // its waiters may have left meanwhile
			pw.result, pw.done = res, true
			if on == releaseOnProbe {
				ep.early, ep.earlyPod, ep.earlyIP, ep.earlyAt = true, ep.cand.Pod, ep.cand.PodIP, time.Now()
			}
			close(pw.ready)
			released = pw.refs
		}
		a.mu.Unlock()
		if ep.tl.releasing(on) {
			a.events.record(ep.key, EventReleased, "released "+strconv.Itoa(released)+" held request(s) after "+seconds(time.Since(ep.started))+", on "+releaseSignal[on])
		}
	}
	return all
}
