package activator

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func TestTrackerCountsAndSweeps(t *testing.T) {
	tr := NewTracker()
	k := nameKey("ns", "a")
	a := tr.Begin(resolver.Key{Namespace: "ns", Name: "a", UID: "u"})
	if n, last := tr.State(k); n != 1 || last.IsZero() {
		t.Fatalf("state = %d, %v", n, last)
	}
	now := time.Now()
	visited := 0
	// In flight: kept and marked active now, even past keep.
	tr.sweep(now.Add(2*time.Hour), time.Hour, func(resolver.Key) bool { return true }, func(*Activity, time.Time) { visited++ })
	if _, last := tr.State(k); !last.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("open request not marked active at the sweep: %v", last)
	}
	a.End()
	// Ended, sandbox gone: dropped.
	tr.sweep(time.Now(), time.Hour, func(resolver.Key) bool { return false }, func(*Activity, time.Time) { visited++ })
	if tr.Len() != 0 || visited != 1 {
		t.Fatalf("len %d visited %d, want 0 and 1", tr.Len(), visited)
	}
	// A Begin after the drop uses a fresh entry.
	b := tr.Begin(k)
	if b == a || tr.Len() != 1 {
		t.Fatal("Begin reused a dropped entry")
	}
	b.End()
}

// TestTrackerRacesSweep: Begin racing a sweep that drops entries never
// loses a request: every End finds the entry its Begin counted on.
func TestTrackerRacesSweep(t *testing.T) {
	tr := NewTracker()
	k := nameKey("ns", "a")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			tr.sweep(time.Now().Add(2*time.Hour), time.Hour, func(resolver.Key) bool { return true }, func(*Activity, time.Time) {})
		}
	}()
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 2000; j++ {
				a := tr.Begin(k)
				if a.dead.Load() {
					t.Error("Begin returned a dropped entry")
				}
				a.End()
			}
		}()
	}
	// Hold one open: it must survive every sweep.
	open := tr.Begin(k)
	for i := 0; i < 100; i++ {
		if n, _ := tr.State(k); n < 1 {
			t.Fatal("open request lost")
		}
	}
	close(stop)
	wg.Wait()
	open.End()
}

func BenchmarkTrackerBeginEnd(b *testing.B) {
	tr := NewTracker()
	k := nameKey("ns", "a")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.Begin(k).End()
		}
	})
}

func TestReporterWritesWhenDue(t *testing.T) {
	sb := newFakeSandboxes()
	never, active := nameKey("ns", "never"), nameKey("ns", "active")
	sb.set(never, resolver.Result{State: resolver.StateRunning}, resolver.Lifecycle{IdleTimeout: 0, IdleTimeoutSet: true})
	sb.set(active, resolver.Result{State: resolver.StateRunning}, resolver.Lifecycle{})
	tr := NewTracker()
	var mu sync.Mutex
	written := map[resolver.Key]time.Time{}
	w := &fakeWaker{onRecord: func(k resolver.Key, at time.Time) error {
		mu.Lock()
		written[k] = at
		mu.Unlock()
		return nil
	}}
	r := NewReporter(ReporterOptions{Tracker: tr, Sandboxes: sb, Waker: w, Policy: Policy{IdleTimeout: time.Minute}, Metrics: NewMetrics(prometheus.NewRegistry())})
	tr.Begin(never).End()
	open := tr.Begin(active)
	now := time.Now()
	r.tick(context.Background(), now)
	if w.records.Load() != 1 || !written[active].Equal(now) {
		t.Fatalf("records %d, %v; want one, for the active sandbox at the tick", w.records.Load(), written)
	}
	// The object now carries it: nothing is due until a quarter of the
	// timeout (15s) passed.
	sb.setLifecycle(active, resolver.Lifecycle{LastActivity: now})
	r.tick(context.Background(), now.Add(10*time.Second))
	if w.records.Load() != 1 {
		t.Fatalf("wrote again after 10s of a 1m timeout")
	}
	r.tick(context.Background(), now.Add(16*time.Second))
	if w.records.Load() != 2 {
		t.Fatalf("records %d after 16s with a connection open, want 2", w.records.Load())
	}
	open.End()
}

func TestReportInterval(t *testing.T) {
	for _, tc := range []struct{ idle, want time.Duration }{
		{2 * time.Second, time.Second},
		{time.Minute, 15 * time.Second},
		{10 * time.Minute, 150 * time.Second},
		{24 * time.Hour, 5 * time.Minute},
	} {
		if got := reportInterval(tc.idle); got != tc.want {
			t.Errorf("reportInterval(%v) = %v, want %v", tc.idle, got, tc.want)
		}
	}
}

func TestPolicyPrecedence(t *testing.T) {
	p := Policy{HoldTimeout: time.Minute, IdleTimeout: time.Hour, NamespaceIdleTimeouts: map[string]time.Duration{"team": 10 * time.Minute, "keep": 0}}
	for _, tc := range []struct {
		ns   string
		lc   resolver.Lifecycle
		want time.Duration
	}{
		{"other", resolver.Lifecycle{}, time.Hour},
		{"team", resolver.Lifecycle{}, 10 * time.Minute},
		{"keep", resolver.Lifecycle{}, 0},
		{"team", resolver.Lifecycle{IdleTimeout: time.Second, IdleTimeoutSet: true}, time.Second},
		{"other", resolver.Lifecycle{IdleTimeout: 0, IdleTimeoutSet: true}, 0},
	} {
		if got := p.idleTimeout(tc.ns, tc.lc); got != tc.want {
			t.Errorf("idleTimeout(%s, %+v) = %v, want %v", tc.ns, tc.lc, got, tc.want)
		}
	}
	if got := p.holdTimeout(resolver.Lifecycle{HoldTimeout: time.Second, HoldTimeoutSet: true}); got != time.Second {
		t.Errorf("hold annotation ignored: %v", got)
	}
}
