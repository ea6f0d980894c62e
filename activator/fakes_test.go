package activator

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// fakeSandboxes is an in-memory resolver with change notifications.
type fakeSandboxes struct {
	mu      sync.Mutex
	results map[resolver.Key]resolver.Result
	life    map[resolver.Key]resolver.Lifecycle
	cands   map[resolver.Key]resolver.Candidate
	waiters map[resolver.Key]chan struct{}
	feeds   []*fakeFeed
	seen    map[resolver.State]int // states Lookup returned, for tests that must know what was observed
}

func newFakeSandboxes() *fakeSandboxes {
	return &fakeSandboxes{
		results: map[resolver.Key]resolver.Result{},
		life:    map[resolver.Key]resolver.Lifecycle{},
		cands:   map[resolver.Key]resolver.Candidate{},
		waiters: map[resolver.Key]chan struct{}{},
		seen:    map[resolver.State]int{},
	}
}

func nameKey(ns, name string) resolver.Key { return resolver.Key{Namespace: ns, Name: name} }

func (f *fakeSandboxes) set(k resolver.Key, res resolver.Result, lc resolver.Lifecycle) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res.Namespace, res.Name = k.Namespace, k.Name
	if res.State == resolver.StateUnknown {
		delete(f.results, k)
		delete(f.life, k)
	} else {
		f.results[k] = res
		f.life[k] = lc
	}
	if ch := f.waiters[k]; ch != nil {
		close(ch)
		delete(f.waiters, k)
	}
	for _, fd := range f.feeds {
		fd.add(k)
	}
}

func (f *fakeSandboxes) setState(k resolver.Key, st resolver.State, ip netip.Addr) {
	f.mu.Lock()
	res, lc := f.results[k], f.life[k]
	f.mu.Unlock()
	res.State, res.PodIP = st, ip
	f.set(k, res, lc)
}

// setCandidate sets (or, with a zero Candidate, removes) the starting
// sandbox's candidate pod and wakes waiters, as the resolver does.
func (f *fakeSandboxes) setCandidate(k resolver.Key, c resolver.Candidate) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.Pod == "" {
		delete(f.cands, k)
	} else {
		f.cands[k] = c
	}
	if ch := f.waiters[k]; ch != nil {
		close(ch)
		delete(f.waiters, k)
	}
}

func (f *fakeSandboxes) Candidate(k resolver.Key) (resolver.Candidate, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.cands[k]
	if !ok || f.results[k].State != resolver.StateStarting {
		return resolver.Candidate{}, false
	}
	return c, true
}

func (f *fakeSandboxes) setLifecycle(k resolver.Key, lc resolver.Lifecycle) {
	f.mu.Lock()
	f.life[k] = lc
	f.mu.Unlock()
}

func (f *fakeSandboxes) Lookup(k resolver.Key) resolver.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen[f.results[k].State]++
	return f.results[k]
}

func (f *fakeSandboxes) looked(st resolver.State) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[st]
}

func (f *fakeSandboxes) Changed(k resolver.Key) (<-chan struct{}, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := f.waiters[k]
	if ch == nil {
		ch = make(chan struct{})
		f.waiters[k] = ch
	}
	return ch, func() {}
}

func (f *fakeSandboxes) Lifecycle(k resolver.Key) (resolver.Lifecycle, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.results[k]; !ok {
		return resolver.Lifecycle{}, false
	}
	return f.life[k], true
}

func (f *fakeSandboxes) Subscribe() resolver.Feed {
	f.mu.Lock()
	defer f.mu.Unlock()
	fd := &fakeFeed{ready: make(chan struct{}, 1), pending: map[resolver.Key]bool{}}
	f.feeds = append(f.feeds, fd)
	return fd
}

func (f *fakeSandboxes) Snapshot() []resolver.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []resolver.Result
	for _, r := range f.results {
		out = append(out, r)
	}
	return out
}

type fakeFeed struct {
	mu      sync.Mutex
	pending map[resolver.Key]bool
	ready   chan struct{}
}

func (fd *fakeFeed) add(k resolver.Key) {
	fd.mu.Lock()
	fd.pending[k] = true
	fd.mu.Unlock()
	select {
	case fd.ready <- struct{}{}:
	default:
	}
}

func (fd *fakeFeed) Next(ctx context.Context) ([]resolver.Key, error) {
	for {
		fd.mu.Lock()
		var keys []resolver.Key
		for k := range fd.pending {
			keys = append(keys, k)
		}
		clear(fd.pending)
		fd.mu.Unlock()
		if len(keys) > 0 {
			return keys, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-fd.ready:
		}
	}
}

func (fd *fakeFeed) Close() {}

// fakeWaker records calls; its behaviour is set by hooks.
type fakeWaker struct {
	resumes, suspends, records atomic.Int64
	onResume                   func(k resolver.Key) error
	onSuspend                  func(k resolver.Key, rev string) error
	onRecord                   func(k resolver.Key, at time.Time) error
}

func (w *fakeWaker) Resume(ctx context.Context, k resolver.Key) error {
	w.resumes.Add(1)
	if w.onResume != nil {
		return w.onResume(k)
	}
	return nil
}

func (w *fakeWaker) Suspend(ctx context.Context, k resolver.Key, rev string) error {
	w.suspends.Add(1)
	if w.onSuspend != nil {
		return w.onSuspend(k, rev)
	}
	return nil
}

func (w *fakeWaker) RecordActivity(ctx context.Context, k resolver.Key, at time.Time) error {
	w.records.Add(1)
	if w.onRecord != nil {
		return w.onRecord(k, at)
	}
	return nil
}

// listen opens a loopback listener that accepts and closes connections.
func listen(t testing.TB) (net.Listener, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln, uint16(ln.Addr().(*net.TCPAddr).Port)
}

// freePort returns a loopback port nothing listens on (for now).
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return port
}

var (
	loopback = netip.MustParseAddr("127.0.0.1")
	netip0   netip.Addr
)

func newTestActivator(t testing.TB, sb *fakeSandboxes, w *fakeWaker, mod func(*Options)) *Activator {
	t.Helper()
	opts := Options{Sandboxes: sb, Waker: w, Metrics: NewMetrics(prometheus.NewRegistry())}
	if mod != nil {
		mod(&opts)
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// eventually waits for cond with a deadline (no fixed sleeps).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (a *Activator) heldNow() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held
}

func (a *Activator) episodeCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.episodes)
}
