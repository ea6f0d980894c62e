package activator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func newTestSuspender(sb *fakeSandboxes, w *fakeWaker, tr *Tracker, idle time.Duration) *IdleSuspender {
	s := NewIdleSuspender(IdleOptions{Sandboxes: sb, Catalog: sb, Waker: w, Tracker: tr, Policy: Policy{IdleTimeout: idle}, ReportTick: 10 * time.Millisecond, Metrics: NewMetrics(prometheus.NewRegistry())})
	s.running = map[nsName]runningSince{}
	s.index = map[nsName]*deadline{}
	return s
}

// TestIdleDeadline: the deadline is the latest of first seen running,
// local activity and the annotation plus the slack of other replicas.
func TestIdleDeadline(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	tr := NewTracker()
	s := newTestSuspender(sb, &fakeWaker{}, tr, time.Minute)
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	slack := reportInterval(time.Minute) + 2*s.opts.ReportTick

	sb.set(k, resolver.Result{State: resolver.StateSuspended}, resolver.Lifecycle{})
	if _, _, ok := s.deadline(k, t0); ok {
		t.Fatal("a suspended sandbox has a deadline")
	}
	sb.setState(k, resolver.StateRunning, loopback)
	if at, _, _ := s.deadline(k, t0); !at.Equal(t0.Add(time.Minute)) {
		t.Fatalf("first seen running: %v", at)
	}
	// Seen earlier: an annotation from later wins, with the slack.
	sb.setLifecycle(k, resolver.Lifecycle{LastActivity: t0.Add(30 * time.Second)})
	if at, _, _ := s.deadline(k, t0.Add(time.Hour)); !at.Equal(t0.Add(30*time.Second + time.Minute + slack)) {
		t.Fatalf("annotation: %v", at)
	}
	// A request open here: not before now + timeout.
	a := tr.Begin(k)
	now := t0.Add(2 * time.Hour)
	if at, _, _ := s.deadline(k, now); !at.Equal(now.Add(time.Minute)) {
		t.Fatalf("open request: %v", at)
	}
	a.End()
	// Never suspended by annotation.
	sb.setLifecycle(k, resolver.Lifecycle{IdleTimeout: 0, IdleTimeoutSet: true})
	if _, _, ok := s.deadline(k, now); ok {
		t.Fatal("idle-timeout 0 has a deadline")
	}
}

// TestIdleSuspenderRun: idle sandboxes are suspended with the revision
// they were judged on; a conflict makes it look again; busy and
// never-suspended ones are left alone.
func TestIdleSuspenderRun(t *testing.T) {
	sb := newFakeSandboxes()
	idle, busy, never := nameKey("ns", "idle"), nameKey("ns", "busy"), nameKey("ns", "never")
	sb.set(idle, resolver.Result{State: resolver.StateRunning}, resolver.Lifecycle{Revision: "7"})
	sb.set(busy, resolver.Result{State: resolver.StateRunning}, resolver.Lifecycle{})
	sb.set(never, resolver.Result{State: resolver.StateRunning}, resolver.Lifecycle{IdleTimeoutSet: true})
	tr := NewTracker()
	open := tr.Begin(busy)
	defer open.End()
	suspended := make(chan string, 10)
	w := &fakeWaker{}
	w.onSuspend = func(k resolver.Key, rev string) error {
		if k != idle {
			suspended <- "wrong sandbox " + k.Name
			return nil
		}
		if rev == "7" {
			// Activity was reported meanwhile.
			sb.setLifecycle(idle, resolver.Lifecycle{Revision: "8"})
			return fmt.Errorf("patch: %w", ErrConflict)
		}
		go sb.setState(idle, resolver.StateSuspended, netip0)
		suspended <- k.Name + "@" + rev
		return nil
	}
	s := NewIdleSuspender(IdleOptions{Sandboxes: sb, Catalog: sb, Waker: w, Tracker: tr, Policy: Policy{IdleTimeout: 30 * time.Millisecond}, ReportTick: 5 * time.Millisecond, Metrics: NewMetrics(prometheus.NewRegistry())})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	if got := <-suspended; got != "idle@8" {
		t.Fatalf("suspended %s, want idle@8", got)
	}
	// A new sandbox that starts running later is found through the feed.
	late := nameKey("ns", "late")
	w.onSuspend = func(k resolver.Key, rev string) error { suspended <- k.Name; return nil }
	sb.set(late, resolver.Result{State: resolver.StateRunning}, resolver.Lifecycle{})
	if got := <-suspended; got != "late" {
		t.Fatalf("suspended %s, want late", got)
	}
	cancel()
	<-done
	if n := w.suspends.Load(); n != 3 {
		t.Fatalf("suspend calls = %d, want 3 (conflict, idle, late); busy and never must not be", n)
	}
}

// TestIdleTimeoutSetLater: a timeout set (or changed) on a sandbox that
// has run for long restarts its clock: no instant suspension of a sandbox
// whose replicas had nothing to report before.
func TestIdleTimeoutSetLater(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	s := newTestSuspender(sb, &fakeWaker{}, NewTracker(), 0)
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	sb.set(k, resolver.Result{State: resolver.StateRunning}, resolver.Lifecycle{})
	if _, _, ok := s.deadline(k, t0); ok {
		t.Fatal("no timeout: no deadline")
	}
	later := t0.Add(time.Hour)
	sb.setLifecycle(k, resolver.Lifecycle{IdleTimeout: time.Minute, IdleTimeoutSet: true})
	if at, _, _ := s.deadline(k, later); !at.Equal(later.Add(time.Minute)) {
		t.Fatalf("timeout set an hour later: deadline %v, want %v", at, later.Add(time.Minute))
	}
	evenLater := later.Add(30 * time.Second)
	sb.setLifecycle(k, resolver.Lifecycle{IdleTimeout: 10 * time.Second, IdleTimeoutSet: true})
	if at, _, _ := s.deadline(k, evenLater); !at.Equal(evenLater.Add(10 * time.Second)) {
		t.Fatalf("timeout shortened: deadline %v", at)
	}
}
