package activator

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Sandboxes is the resolver as the activator sees it.
type Sandboxes interface {
	Lookup(key resolver.Key) resolver.Result
	// Changed returns a channel closed at the sandbox's next change, and
	// a release for when the caller stops waiting.
	Changed(key resolver.Key) (<-chan struct{}, func())
	// Lifecycle is the sandbox's suspend/resume policy from its
	// annotations; false when the sandbox is unknown.
	Lifecycle(key resolver.Key) (resolver.Lifecycle, bool)
	// Candidate is the pod a starting sandbox is coming up on, before it
	// is Ready; false when there is none to probe.
	Candidate(key resolver.Key) (resolver.Candidate, bool)
}

// Waker changes a sandbox's operating mode. Calls must be idempotent:
// replicas racing each other send the same change. Errors wrap ErrConflict,
// ErrForbidden, ErrNotFound or ErrInvalid where they apply.
type Waker interface {
	Resume(ctx context.Context, key resolver.Key) error
	// Suspend applies only if the sandbox is still at revision.
	Suspend(ctx context.Context, key resolver.Key, revision string) error
	// RecordActivity publishes the sandbox's last activity to the other
	// replicas.
	RecordActivity(ctx context.Context, key resolver.Key, at time.Time) error
}

// Options configure an Activator. Zero values take the documented defaults.
type Options struct {
	Sandboxes Sandboxes
	Waker     Waker
	Policy    Policy

	// MaxHeldPerSandbox bounds the requests held for one sandbox (default
	// 1000); MaxHeldTotal those held for all (default 10000). Beyond them
	// requests are answered 503 with Retry-After at once.
	MaxHeldPerSandbox int
	MaxHeldTotal      int
	// ReleaseConcurrency caps how many released requests of one sandbox
	// may be waiting for their response head at once (default 100), so a
	// pod that just started is not hit by every held request together.
	ReleaseConcurrency int
	// ProbeTimeout bounds one connect attempt of the readiness probe
	// (default 1s); a pod's own probes keep their timeoutSeconds.
	ProbeTimeout time.Duration
	// ProbeInterval is how often a starting pod is probed on the fast
	// path while it has had its address for less than 10s (default
	// 10ms): it bounds how late after the pod starts listening the held
	// requests go.
	ProbeInterval time.Duration
	// AllowLoopbackPodIP lets the fast path probe a pod whose address is
	// loopback (tests and the local demo). Otherwise such a pod is left
	// to Ready, and the router refuses it then: whoever can write a pod's
	// status must not make the router send its probes (HTTP GETs of a
	// path of their choosing) to its own host.
	AllowLoopbackPodIP bool
	// Dial opens probe connections; nil: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	Metrics *Metrics
	// Events records each sandbox's wake-ups and failures for people to
	// read (the dashboard); nil: none are kept.
	Events *Recorder
	Log    *slog.Logger
}

// Activator holds requests for sandboxes that are not running and wakes
// the sandboxes. It implements the router's Activator interface.
type Activator struct {
	opts    Options
	metrics *Metrics
	events  *Recorder
	log     *slog.Logger
	prober  *prober

	mu       sync.Mutex
	episodes map[nsName]*episode // sandboxes being woken
	held     int                 // requests held in all
}

type nsName struct{ namespace, name string }

// defaultProbeTimeout bounds one connect of a probe by default.
const defaultProbeTimeout = time.Second

// maxPortsPerSandbox bounds the distinct ports requests held for one
// sandbox may ask for at once.
const maxPortsPerSandbox = 16

// New builds an Activator.
func New(opts Options) (*Activator, error) {
	if opts.Sandboxes == nil || opts.Waker == nil {
		return nil, errors.New("activator: Sandboxes and Waker are required")
	}
	if opts.Metrics == nil {
		return nil, errors.New("activator: Metrics is required")
	}
	if opts.Policy.HoldTimeout <= 0 {
		opts.Policy.HoldTimeout = DefaultHoldTimeout
	}
	if opts.MaxHeldPerSandbox <= 0 {
		opts.MaxHeldPerSandbox = 1000
	}
	if opts.MaxHeldTotal <= 0 {
		opts.MaxHeldTotal = 10000
	}
	if opts.ReleaseConcurrency <= 0 {
		opts.ReleaseConcurrency = 100
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = defaultProbeTimeout
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = 10 * time.Millisecond
	}
	if opts.Dial == nil {
		d := &net.Dialer{}
		opts.Dial = d.DialContext
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Activator{
		opts:     opts,
		metrics:  opts.Metrics,
		events:   opts.Events,
		log:      opts.Log,
		prober:   newProber(opts.Dial, opts.ProbeTimeout),
		episodes: make(map[nsName]*episode),
	}, nil
}

// Activate holds the request until the sandbox runs and accepts
// connections on port, and returns where it runs. The returned release
// must be called once the request has its response head (or failed): it
// frees the request's place under ReleaseConcurrency. The request's body
// is not touched: it waits, unread, in the client connection.
func (a *Activator) Activate(ctx context.Context, key resolver.Key, port uint16, current resolver.Result) (resolver.Result, func(), error) {
	arrived := time.Now()
	byName := resolver.Key{Namespace: key.Namespace, Name: key.Name}
	lc, ok := a.opts.Sandboxes.Lifecycle(byName)
	if !ok {
		// Not a Sandbox object: a warm-pool pod, reached by its UID, that
		// is still starting. There is nothing to resume; its pod comes
		// up by itself.
		return resolver.Result{}, nil, errWarmStarting
	}
	hold := a.opts.Policy.holdTimeout(lc)
	holdCtx, cancel := context.WithDeadline(ctx, arrived.Add(hold))
	defer cancel()

	ep, wait, err := a.admit(byName, port, hold)
	if err != nil {
		return resolver.Result{}, nil, err
	}
	defer a.leave(ep, port, wait)

	var res resolver.Result
	select {
	case <-wait.ready:
		res = wait.result
	case <-ep.failed:
		return resolver.Result{}, nil, ep.err
	case <-holdCtx.Done():
		return resolver.Result{}, nil, a.holdEnded(ctx, byName)
	}
	if key.UID != "" && res.UID != key.UID {
		// The sandbox was replaced by another of the same name while the
		// request waited; the client asked for the old one.
		return resolver.Result{}, nil, errDeleted
	}
	// The sandbox is ready: from here only the request's own deadline
	// applies, the hold timeout is over.
	select {
	case ep.releasing <- struct{}{}:
	case <-ctx.Done():
		return resolver.Result{}, nil, a.holdEnded(ctx, byName)
	}
	ep.released(a.metrics)
	return res, ep.releaseSlot, nil
}

// holdEnded says why a hold ended before the sandbox was ready: the client
// left (its context's error, which the router logs as 499), or a deadline,
// the request's own or the hold timeout, passed (504).
func (a *Activator) holdEnded(ctx context.Context, key resolver.Key) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	a.metrics.holdTimeouts.Inc()
	a.events.record(key, EventHoldTimeout, "a held request ran out of time (504)")
	return errTimeout
}

// admit counts the request against the bounds and joins it to its
// sandbox's episode, starting one if none runs.
func (a *Activator) admit(key resolver.Key, port uint16, hold time.Duration) (*episode, *portWait, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.held >= a.opts.MaxHeldTotal {
		a.metrics.overflow.WithLabelValues("total").Inc()
		a.events.record(key, EventHoldRefused, "a request was refused (503): the router holds as many requests as it may")
		return nil, nil, errTotalFull
	}
	nn := nsName{key.Namespace, key.Name}
	ep := a.episodes[nn]
	if ep != nil && ep.waiters >= a.opts.MaxHeldPerSandbox {
		a.metrics.overflow.WithLabelValues("sandbox").Inc()
		a.events.record(key, EventHoldRefused, "a request was refused (503): the sandbox's hold queue is full")
		return nil, nil, errSandboxFull
	}
	if ep != nil && ep.ports[port] == nil && len(ep.ports) >= maxPortsPerSandbox {
		// Each port is probed: clients must not make the wake-up of a
		// sandbox probe thousands of ports.
		a.metrics.overflow.WithLabelValues("sandbox").Inc()
		a.events.record(key, EventHoldRefused, "a request was refused (503): too many ports are waited for")
		return nil, nil, errTooManyPorts
	}
	if ep != nil && ep.early {
		// Released on a probe: the pod must still be the sandbox's, though
		// the episode may not have seen the change yet (a suspension, a
		// replacement), or this request would get the answer of a pod
		// that is going away; and after earlyTrust the port is connected
		// to again before the request goes.
		if c, ok := a.opts.Sandboxes.Candidate(key); !ok || c.Pod != ep.earlyPod || c.PodIP != ep.earlyIP || time.Since(ep.earlyAt) > earlyTrust {
			ep.forgetLocked()
			ep.poke()
		}
	}
	if ep == nil {
		ep = newEpisode(a, key, hold)
		a.episodes[nn] = ep
		a.events.record(key, EventWake, "wake-up began: a request is held while the sandbox resumes")
		go ep.run()
	}
	ep.waiters++
	a.held++
	a.metrics.held.Inc()
	return ep, ep.want(port), nil
}

// leave uncounts a request that stopped waiting, and wakes its episode
// when it was the last: an episode without waiters stops probing.
func (a *Activator) leave(ep *episode, port uint16, pw *portWait) {
	a.mu.Lock()
	ep.waiters--
	a.held--
	ep.unwant(port, pw)
	last := ep.waiters == 0
	a.mu.Unlock()
	a.metrics.held.Dec()
	if last {
		ep.poke()
	}
}

// finish removes a finished episode, under a.mu, so that the next request
// for the sandbox starts a fresh one.
func (a *Activator) finish(ep *episode) {
	nn := nsName{ep.key.Namespace, ep.key.Name}
	if a.episodes[nn] == ep {
		delete(a.episodes, nn)
	}
}

// Held is the number of requests held now per sandbox being woken (keys
// by namespace and name), on this replica: one lock over the wake-ups in
// progress, which are few.
func (a *Activator) Held() map[resolver.Key]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[resolver.Key]int, len(a.episodes))
	for _, ep := range a.episodes {
		if ep.waiters > 0 {
			out[ep.key] = ep.waiters
		}
	}
	return out
}
