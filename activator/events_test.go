package activator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// TestRecorderBounds: a sandbox keeps its last 16 events, newest first; a
// repeat folds into a count; past MaxSandboxes the sandbox whose last event
// is oldest goes.
func TestRecorderBounds(t *testing.T) {
	r := NewRecorder(3)
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	tick := 0
	r.now = func() time.Time { tick++; return t0.Add(time.Duration(tick) * time.Second) }
	a := nameKey("ns", "a")
	for i := range 20 {
		r.record(a, EventWake, fmt.Sprint("event ", i))
	}
	got := r.Events(a)
	if len(got) != eventsPerSandbox || got[0].Text != "event 19" || got[15].Text != "event 4" || !got[0].At.After(got[1].At) {
		t.Fatalf("ring: %d events, first %+v, last %+v", len(got), got[0], got[len(got)-1])
	}
	for range 3 {
		r.SandboxError(resolver.Key{Namespace: "ns", Name: "a", UID: "u1"}, 502, "upstream_connect_failed")
	}
	got = r.Events(a)
	if len(got) != eventsPerSandbox || got[0].Count != 3 || got[0].Kind != EventUpstreamFailed || got[0].Text != "answered 502 upstream_connect_failed" || got[1].Text != "event 19" {
		t.Fatalf("folded repeat: %+v, then %+v", got[0], got[1])
	}

	r.record(nameKey("ns", "b"), EventWake, "b")
	r.record(nameKey("ns", "c"), EventWake, "c")
	r.record(a, EventWake, "a again") // a is now the most recent
	r.record(nameKey("ns", "d"), EventWake, "d")
	if r.Len() != 3 || r.Events(nameKey("ns", "b")) != nil || r.Events(a) == nil || r.Events(nameKey("ns", "d")) == nil {
		t.Fatalf("eviction: %d kept, b %v", r.Len(), r.Events(nameKey("ns", "b")))
	}
	for i := range 1000 {
		r.record(nameKey("ns", fmt.Sprint("x", i)), EventWake, "x")
	}
	if r.Len() != 3 {
		t.Fatalf("%d sandboxes kept, bound 3", r.Len())
	}

	r.record(resolver.Key{Namespace: "ns", UID: "pod-uid"}, EventWake, "no name")
	if r.Events(resolver.Key{Namespace: "ns", UID: "pod-uid"}) != nil {
		t.Fatal("an event without a sandbox name was kept")
	}
	var none *Recorder
	none.record(a, EventWake, "nil")
	if none.Events(a) != nil {
		t.Fatal("a nil recorder returned events")
	}
}

func kinds(evs []Event) string {
	var ks []string
	for _, e := range evs {
		ks = append(ks, e.Kind+": "+e.Text)
	}
	return strings.Join(ks, "\n")
}

func waitEvent(t *testing.T, r *Recorder, k resolver.Key, kind, text string) {
	t.Helper()
	eventually(t, "event "+kind+" "+text, func() bool {
		for _, e := range r.Events(k) {
			if e.Kind == kind && strings.Contains(e.Text, text) {
				return true
			}
		}
		return false
	})
}

// TestEventsOfAWakeUp: a wake-up's start and release, a hold timeout, a
// refused request and a failed resume are recorded where they are counted.
func TestEventsOfAWakeUp(t *testing.T) {
	t.Run("woken and released", func(t *testing.T) {
		sb := newFakeSandboxes()
		k := nameKey("ns", "a")
		sb.set(k, resolver.Result{State: resolver.StateSuspended}, resolver.Lifecycle{})
		_, port := listen(t)
		w := &fakeWaker{onResume: func(resolver.Key) error { go sb.setState(k, resolver.StateRunning, loopback); return nil }}
		rec := NewRecorder(0)
		a := newTestActivator(t, sb, w, func(o *Options) { o.Events = rec })
		activateAndRelease(t, a, k, port)
		waitEvent(t, rec, k, EventReleased, "released 1 held request(s) after ")
		evs := rec.Events(k)
		if len(evs) != 2 || evs[1].Kind != EventWake || !strings.HasSuffix(evs[0].Text, "on the pod's Ready condition") {
			t.Fatalf("events:\n%s", kinds(evs))
		}
	})
	t.Run("hold timeout", func(t *testing.T) {
		sb := newFakeSandboxes()
		k := nameKey("ns", "slow")
		sb.set(k, resolver.Result{State: resolver.StateSuspended}, resolver.Lifecycle{HoldTimeout: 20 * time.Millisecond, HoldTimeoutSet: true})
		rec := NewRecorder(0)
		a := newTestActivator(t, sb, &fakeWaker{}, func(o *Options) { o.Events = rec })
		if _, _, err := a.Activate(context.Background(), k, 80, resolver.Result{}); err == nil {
			t.Fatal("no timeout")
		}
		waitEvent(t, rec, k, EventHoldTimeout, "ran out of time (504)")
		eventually(t, "episode to end", func() bool { return a.episodeCount() == 0 })
	})
	t.Run("refused and resume failed", func(t *testing.T) {
		sb := newFakeSandboxes()
		k := nameKey("ns", "a")
		sb.set(k, resolver.Result{State: resolver.StateSuspended}, resolver.Lifecycle{})
		refuse := make(chan struct{})
		w := &fakeWaker{onResume: func(resolver.Key) error { <-refuse; return fmt.Errorf("patch: %w", ErrForbidden) }}
		rec := NewRecorder(0)
		a := newTestActivator(t, sb, w, func(o *Options) { o.Events = rec; o.MaxHeldPerSandbox = 1 })
		done := make(chan error, 1)
		go func() { _, _, err := a.Activate(context.Background(), k, 80, resolver.Result{}); done <- err }()
		eventually(t, "one held", func() bool { return a.heldNow() == 1 })
		if _, _, err := a.Activate(context.Background(), k, 80, resolver.Result{}); asError(t, err).Code != CodeHoldQueueFull {
			t.Fatalf("second request: %v", err)
		}
		waitEvent(t, rec, k, EventHoldRefused, "hold queue is full")
		close(refuse)
		if asError(t, <-done).Code != CodeResumeFailed {
			t.Fatal("held request not failed")
		}
		waitEvent(t, rec, k, EventResumeFailed, "resume refused (forbidden)")
		eventually(t, "episode to end", func() bool { return a.episodeCount() == 0 })
	})
}

// TestEventsOfIdleSuspension: a suspension put off by a conflict and the
// suspension that follows are both recorded.
func TestEventsOfIdleSuspension(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "idle")
	sb.set(k, resolver.Result{State: resolver.StateRunning}, resolver.Lifecycle{Revision: "7"})
	w := &fakeWaker{}
	done := make(chan struct{})
	w.onSuspend = func(_ resolver.Key, rev string) error {
		if rev == "7" {
			sb.setLifecycle(k, resolver.Lifecycle{Revision: "8"})
			return fmt.Errorf("patch: %w", ErrConflict)
		}
		go sb.setState(k, resolver.StateSuspended, netip0)
		close(done)
		return nil
	}
	rec := NewRecorder(0)
	s := NewIdleSuspender(IdleOptions{Sandboxes: sb, Catalog: sb, Waker: w, Tracker: NewTracker(), Policy: Policy{IdleTimeout: 20 * time.Millisecond},
		ReportTick: 5 * time.Millisecond, Metrics: NewMetrics(prometheus.NewRegistry()), Events: rec})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); s.Run(ctx) }()
	<-done
	waitEvent(t, rec, k, EventSuspended, "suspended for idleness (idle timeout 20ms)")
	cancel()
	<-stopped
	if evs := rec.Events(k); len(evs) != 2 || evs[1].Kind != EventSuspendFailed {
		t.Fatalf("events:\n%s", kinds(evs))
	}
}

// TestHeld: Held counts the requests held per sandbox being woken, and
// forgets a sandbox once nobody waits for it.
func TestHeld(t *testing.T) {
	sb := newFakeSandboxes()
	for _, n := range []string{"a", "b"} {
		sb.set(nameKey("ns", n), resolver.Result{State: resolver.StateStarting}, resolver.Lifecycle{})
	}
	a := newTestActivator(t, sb, &fakeWaker{}, nil)
	if len(a.Held()) != 0 {
		t.Fatalf("held before any request: %v", a.Held())
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range []string{"a", "a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Activate(ctx, resolver.Key{Namespace: "ns", Name: n, UID: "u-" + n}, 80, resolver.Result{})
		}()
	}
	eventually(t, "three held", func() bool { return a.heldNow() == 3 })
	if got := a.Held(); len(got) != 2 || got[nameKey("ns", "a")] != 2 || got[nameKey("ns", "b")] != 1 {
		t.Fatalf("held %v", got)
	}
	v := View{Activator: a}
	if got := v.Held(); got[nameKey("ns", "a")] != 2 {
		t.Fatalf("view held %v", got)
	}
	cancel()
	wg.Wait()
	if got := a.Held(); len(got) != 0 {
		t.Fatalf("held after all left: %v", got)
	}
}

// TestTrackerRequests: Begin counts each request; Requests visits the
// counts, and View passes them and the policy through.
func TestTrackerRequests(t *testing.T) {
	tr := NewTracker()
	for _, n := range []string{"a", "a", "a", "b"} {
		tr.Begin(resolver.Key{Namespace: "ns", Name: n, UID: "ignored"}).End()
	}
	got := map[resolver.Key]uint64{}
	v := View{Tracker: tr, Policy: Policy{IdleTimeout: time.Minute, NamespaceIdleTimeouts: map[string]time.Duration{"quiet": time.Second}}}
	v.Requests(func(k resolver.Key, n uint64) { got[k] = n })
	if len(got) != 2 || got[nameKey("ns", "a")] != 3 || got[nameKey("ns", "b")] != 1 {
		t.Fatalf("counts %v", got)
	}
	if v.IdleTimeout("ns", resolver.Lifecycle{}) != time.Minute || v.IdleTimeout("quiet", resolver.Lifecycle{}) != time.Second {
		t.Fatal("view idle timeout")
	}
	if n, _ := v.State(nameKey("ns", "a")); n != 0 {
		t.Fatalf("in flight %d", n)
	}
	if v.Held() != nil {
		t.Fatal("a view without an activator holds something")
	}
	v.VisitEvents(nameKey("ns", "a"), func(time.Time, string, string, int) { t.Fatal("a view without a recorder has events") })
}
