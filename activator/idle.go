package activator

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Catalog lists every sandbox and announces changes; the idle suspender
// uses it to learn which sandboxes run.
type Catalog interface {
	Subscribe() resolver.Feed
	Snapshot() []resolver.Result
}

// IdleOptions configure an IdleSuspender.
type IdleOptions struct {
	Sandboxes Sandboxes
	Catalog   Catalog
	Waker     Waker
	Tracker   *Tracker // this replica's activity
	Policy    Policy
	// ReportTick is the Reporter's tick; it is part of the slack allowed
	// for other replicas' reports (default 1s).
	ReportTick time.Duration
	// SuspendTimeout bounds one suspend call (default 10s).
	SuspendTimeout time.Duration
	Metrics        *Metrics
	// Events records suspensions and their failures per sandbox (nil:
	// none are kept); the Activator's recorder, to keep one history.
	Events *Recorder
	Log    *slog.Logger
}

// IdleSuspender suspends sandboxes idle for longer than their timeout. Only
// the elected replica runs it. It keeps one deadline per running sandbox
// with a timeout in a heap and looks at a sandbox again only when its
// deadline passes or the resolver reports a change: no scan of every
// sandbox, no polling of the API server.
//
// A sandbox's deadline is the latest of
//   - when this replica saw it start running, plus its timeout: a
//     sandbox just resumed or created is never suspended at once, and
//     after a hand-over the new leader starts every clock afresh;
//   - its last activity here, plus the timeout;
//   - its last-activity annotation plus the timeout plus the slack other
//     replicas are allowed in reporting (their report interval, a quarter
//     of the timeout, and two ticks): a sandbox that was active anywhere
//     in its last timeout is never suspended.
//
// A request in flight here postpones it; the suspend patch carries the
// revision it was decided on, so a report written meanwhile makes it fail
// with a conflict and the sandbox is looked at again.
type IdleSuspender struct {
	opts    IdleOptions
	running map[nsName]runningSince
	heap    deadlineHeap
	index   map[nsName]*deadline
}

// NewIdleSuspender builds an IdleSuspender; Run runs it.
func NewIdleSuspender(opts IdleOptions) *IdleSuspender {
	if opts.ReportTick <= 0 {
		opts.ReportTick = time.Second
	}
	if opts.SuspendTimeout <= 0 {
		opts.SuspendTimeout = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &IdleSuspender{opts: opts}
}

// Run suspends idle sandboxes until ctx ends (leadership lost).
func (s *IdleSuspender) Run(ctx context.Context) {
	s.running = make(map[nsName]runningSince)
	s.index = make(map[nsName]*deadline)
	s.heap = s.heap[:0]

	feed := s.opts.Catalog.Subscribe()
	defer feed.Close()
	changes := make(chan []resolver.Key)
	go func() {
		defer close(changes)
		for {
			keys, err := feed.Next(ctx)
			if err != nil {
				return
			}
			select {
			case changes <- keys:
			case <-ctx.Done():
				return
			}
		}
	}()
	now := time.Now()
	for _, res := range s.opts.Catalog.Snapshot() {
		if res.Name != "" {
			s.update(resolver.Key{Namespace: res.Namespace, Name: res.Name}, now)
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.arm(timer)
		select {
		case <-ctx.Done():
			return
		case keys, ok := <-changes:
			if !ok {
				return
			}
			now := time.Now()
			for _, k := range keys {
				if k.Name != "" {
					s.update(resolver.Key{Namespace: k.Namespace, Name: k.Name}, now)
				}
			}
		case now := <-timer.C:
			for len(s.heap) > 0 && !s.heap[0].at.After(now) {
				d := s.heap[0]
				s.check(ctx, d.key, now)
			}
		}
	}
}

func (s *IdleSuspender) arm(t *time.Timer) {
	if len(s.heap) == 0 {
		t.Reset(time.Hour)
		return
	}
	t.Reset(max(time.Until(s.heap[0].at), 0))
}

// update recomputes a sandbox's deadline after a change.
func (s *IdleSuspender) update(key resolver.Key, now time.Time) {
	at, _, ok := s.deadline(key, now)
	if !ok {
		s.forget(key)
		return
	}
	s.schedule(key, at)
}

// deadline is when the sandbox may be suspended, and the lifecycle it was
// judged on; false when it is not running or never suspended.
func (s *IdleSuspender) deadline(key resolver.Key, now time.Time) (time.Time, resolver.Lifecycle, bool) {
	nn := nsName{key.Namespace, key.Name}
	res := s.opts.Sandboxes.Lookup(key)
	lc, ok := s.opts.Sandboxes.Lifecycle(key)
	if res.State != resolver.StateRunning || !ok {
		delete(s.running, nn)
		return time.Time{}, lc, false
	}
	idle := s.opts.Policy.idleTimeout(key.Namespace, lc)
	since, seen := s.running[nn]
	if !seen || since.idle != idle {
		since = runningSince{at: now, idle: idle}
		s.running[nn] = since
	}
	if idle <= 0 {
		return time.Time{}, lc, false
	}
	at := since.at.Add(idle)
	if !lc.LastActivity.IsZero() {
		slack := reportInterval(idle) + 2*s.opts.ReportTick
		at = later(at, lc.LastActivity.Add(idle+slack))
	}
	if inFlight, last := s.opts.Tracker.State(key); inFlight > 0 {
		at = later(at, now.Add(idle))
	} else if !last.IsZero() {
		at = later(at, last.Add(idle))
	}
	return at, lc, true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// check looks at a sandbox whose deadline passed, and suspends it if it
// is still idle.
func (s *IdleSuspender) check(ctx context.Context, key resolver.Key, now time.Time) {
	at, lc, ok := s.deadline(key, now)
	if !ok {
		s.forget(key)
		return
	}
	if at.After(now) {
		s.schedule(key, at)
		return
	}
	// The revision judged idle, not a later one: a report that reached
	// the cache since must make the patch conflict.
	sctx, cancel := context.WithTimeout(ctx, s.opts.SuspendTimeout)
	err := s.opts.Waker.Suspend(sctx, key, lc.Revision)
	cancel()
	switch {
	case err == nil:
		s.opts.Metrics.suspensions.WithLabelValues("idle").Inc()
		s.opts.Events.record(key, EventSuspended, "suspended for idleness (idle timeout "+s.opts.Policy.idleTimeout(key.Namespace, lc).String()+")")
		s.opts.Log.Info("suspended idle sandbox", "namespace", key.Namespace, "sandbox", key.Name)
		// The resolver reports the change; until then nothing is due.
		s.forget(key)
	case errors.Is(err, ErrConflict):
		// Changed meanwhile (most likely a replica reported activity):
		// look again once the change has reached the cache.
		s.opts.Metrics.suspendFailures.WithLabelValues("conflict").Inc()
		s.opts.Events.record(key, EventSuspendFailed, "idle suspension put off: the sandbox changed since it was judged idle")
		s.schedule(key, now.Add(s.opts.ReportTick))
	case permanent(err):
		s.opts.Metrics.suspendFailures.WithLabelValues(resultLabel(err)).Inc()
		s.opts.Events.record(key, EventSuspendFailed, "idle suspension refused ("+resultLabel(err)+")")
		s.opts.Log.Warn("suspend refused", "namespace", key.Namespace, "sandbox", key.Name, "err", err)
		s.forget(key)
	default:
		s.opts.Metrics.suspendFailures.WithLabelValues("error").Inc()
		s.opts.Events.record(key, EventSuspendFailed, "idle suspension failed (error); retrying")
		s.opts.Log.Info("suspend failed, retrying", "namespace", key.Namespace, "sandbox", key.Name, "err", err)
		s.schedule(key, now.Add(5*time.Second))
	}
}

func (s *IdleSuspender) schedule(key resolver.Key, at time.Time) {
	nn := nsName{key.Namespace, key.Name}
	if d := s.index[nn]; d != nil {
		d.at = at
		heap.Fix(&s.heap, d.i)
		return
	}
	d := &deadline{key: key, at: at}
	s.index[nn] = d
	heap.Push(&s.heap, d)
}

func (s *IdleSuspender) forget(key resolver.Key) {
	nn := nsName{key.Namespace, key.Name}
	if d := s.index[nn]; d != nil {
		heap.Remove(&s.heap, d.i)
		delete(s.index, nn)
	}
}

// runningSince is when this replica saw a sandbox start running, or its
// idle timeout change: a timeout set or shortened on a busy sandbox must
// not suspend it at once (replicas report nothing for a sandbox that has
// no timeout, so its annotation may be old).
type runningSince struct {
	at   time.Time
	idle time.Duration
}

type deadline struct {
	key resolver.Key
	at  time.Time
	i   int
}

// deadlineHeap is a min-heap of deadlines (container/heap).
type deadlineHeap []*deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].i, h[j].i = i, j
}
func (h *deadlineHeap) Push(x any) {
	d := x.(*deadline)
	d.i = len(*h)
	*h = append(*h, d)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return d
}
