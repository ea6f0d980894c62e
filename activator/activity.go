package activator

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Tracker is this replica's activity per sandbox: how many requests are
// in flight (an upgraded connection or a stream counts until it closes)
// and when the last one started or ended. The router calls Begin and End
// around every request; both are a map read and two atomic writes.
type Tracker struct {
	mu      sync.RWMutex
	entries map[nsName]*Activity
}

// Activity is one sandbox's activity on this replica.
type Activity struct {
	key      resolver.Key
	inFlight atomic.Int64
	last     atomic.Int64  // unix nanoseconds of the last Begin or End
	dead     atomic.Bool   // removed from the tracker; Begin must not use it
	requests atomic.Uint64 // requests begun since the entry was made

	reported time.Time // last activity this replica published (reporter only)
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{entries: make(map[nsName]*Activity)}
}

// Begin counts a request for the sandbox; End must follow. It also adds
// one to the sandbox's request count (Requests). Callers track
// only sandboxes the resolver knows, so the tracker's size follows the
// cluster, not what clients make up.
func (t *Tracker) Begin(key resolver.Key) *Activity {
	nn := nsName{key.Namespace, key.Name}
	now := time.Now().UnixNano()
	for {
		t.mu.RLock()
		a := t.entries[nn]
		t.mu.RUnlock()
		if a == nil {
			t.mu.Lock()
			if a = t.entries[nn]; a == nil {
				a = &Activity{key: resolver.Key{Namespace: key.Namespace, Name: key.Name}}
				t.entries[nn] = a
			}
			t.mu.Unlock()
		}
		a.last.Store(now)
		a.inFlight.Add(1)
		if !a.dead.Load() {
			a.requests.Add(1)
			return a
		}
		// Swept between the read and the count: use a new entry.
		a.inFlight.Add(-1)
	}
}

// End ends a request counted by Begin.
func (a *Activity) End() {
	a.last.Store(time.Now().UnixNano())
	a.inFlight.Add(-1)
}

// State reports the sandbox's requests in flight on this replica and its
// last activity here (zero if none is known).
func (t *Tracker) State(key resolver.Key) (inFlight int64, last time.Time) {
	t.mu.RLock()
	a := t.entries[nsName{key.Namespace, key.Name}]
	t.mu.RUnlock()
	if a == nil {
		return 0, time.Time{}
	}
	return a.inFlight.Load(), time.Unix(0, a.last.Load())
}

// Requests visits the count of requests begun for each sandbox tracked.
// A count starts at zero when its sandbox is first tracked and restarts
// there after an hour without requests drops the entry, so a reader that
// takes rates from two visits must treat a smaller count as a restart.
// It holds the tracker's read lock while it visits: visit must be quick.
func (t *Tracker) Requests(visit func(key resolver.Key, total uint64)) {
	for _, a := range t.all() {
		visit(a.key, a.requests.Load())
	}
}

// all copies the entries under the read lock, so that a visit runs
// without it: a writer waiting on the lock (a new sandbox's Begin) would
// otherwise hold every Begin until the visit ends.
func (t *Tracker) all() []*Activity {
	t.mu.RLock()
	defer t.mu.RUnlock()
	all := make([]*Activity, 0, len(t.entries))
	for _, a := range t.entries {
		all = append(all, a)
	}
	return all
}

// sweep visits every entry. It marks connections still open as active now
// and drops entries without requests whose sandbox is gone or that were
// idle for longer than keep.
func (t *Tracker) sweep(now time.Time, keep time.Duration, known func(resolver.Key) bool, visit func(*Activity, time.Time)) {
	all := t.all()
	var drop []*Activity
	for _, a := range all {
		if a.inFlight.Load() > 0 {
			a.last.Store(now.UnixNano())
		}
		last := time.Unix(0, a.last.Load())
		if a.inFlight.Load() == 0 && (now.Sub(last) > keep || !known(a.key)) {
			drop = append(drop, a)
			continue
		}
		visit(a, last)
	}
	if len(drop) == 0 {
		return
	}
	t.mu.Lock()
	for _, a := range drop {
		// Mark first, then check: a Begin that counted after the check
		// sees the mark and moves to a new entry.
		a.dead.Store(true)
		if a.inFlight.Load() > 0 {
			a.dead.Store(false)
			continue
		}
		delete(t.entries, nsName{a.key.Namespace, a.key.Name})
	}
	t.mu.Unlock()
}

// Len is the number of sandboxes tracked.
func (t *Tracker) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.entries)
}

// ReporterOptions configure a Reporter.
type ReporterOptions struct {
	Tracker   *Tracker
	Sandboxes Sandboxes
	Waker     Waker
	Policy    Policy
	// Tick is how often activity is looked at (default 1s).
	Tick time.Duration
	// MaxWritesPerTick bounds the annotation writes of one tick (default
	// 100); the rest are written at the next ticks.
	MaxWritesPerTick int
	// WriteTimeout bounds one write (default 5s).
	WriteTimeout time.Duration
	Metrics      *Metrics
	Log          *slog.Logger
}

// Reporter publishes this replica's activity to the replica that decides
// about suspension: for every sandbox with an idle timeout that was active
// here, it writes the last-activity annotation when the one on the object
// is older than the sandbox's report interval (a quarter of its idle
// timeout). Every replica sees every write through its informer, so each
// active sandbox costs one write per interval whatever the number of
// replicas, and idle or never-suspended sandboxes cost nothing.
type Reporter struct {
	opts ReporterOptions
}

// NewReporter builds a Reporter; Run runs it.
func NewReporter(opts ReporterOptions) *Reporter {
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.MaxWritesPerTick <= 0 {
		opts.MaxWritesPerTick = 100
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Reporter{opts: opts}
}

// Run reports until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.tick(ctx, now)
		}
	}
}

// keepIdle is how long an entry without requests stays tracked; beyond it
// the sandbox's annotation carries its last activity.
const keepIdle = time.Hour

func (r *Reporter) tick(ctx context.Context, now time.Time) {
	type write struct {
		a         *Activity
		last      time.Time
		published time.Time // the annotation now on the object
	}
	var due []write
	known := func(k resolver.Key) bool {
		_, ok := r.opts.Sandboxes.Lifecycle(k)
		return ok
	}
	r.opts.Tracker.sweep(now, keepIdle, known, func(a *Activity, last time.Time) {
		lc, ok := r.opts.Sandboxes.Lifecycle(a.key)
		if !ok {
			return
		}
		idle := r.opts.Policy.idleTimeout(a.key.Namespace, lc)
		if idle <= 0 {
			return // never suspended: nobody needs to know
		}
		every := reportInterval(idle)
		if last.Sub(lc.LastActivity) >= every && last.Sub(a.reported) >= every {
			due = append(due, write{a, last, lc.LastActivity})
		}
	})
	if r.opts.Metrics != nil {
		r.opts.Metrics.tracked.Set(float64(r.opts.Tracker.Len()))
	}
	if len(due) > r.opts.MaxWritesPerTick {
		// Over budget: the stalest annotations first, so that none drifts
		// past the slack the decider allows; the rest follow next tick.
		slices.SortFunc(due, func(x, y write) int { return x.published.Compare(y.published) })
		due = due[:r.opts.MaxWritesPerTick]
	}
	for _, w := range due {
		wctx, cancel := context.WithTimeout(ctx, r.opts.WriteTimeout)
		err := r.opts.Waker.RecordActivity(wctx, w.a.key, w.last)
		cancel()
		if r.opts.Metrics != nil {
			r.opts.Metrics.activityWrites.WithLabelValues(resultLabel(err)).Inc()
		}
		if err != nil {
			r.opts.Log.Info("recording activity failed", "namespace", w.a.key.Namespace, "sandbox", w.a.key.Name, "err", err)
			continue
		}
		w.a.reported = w.last
	}
}
