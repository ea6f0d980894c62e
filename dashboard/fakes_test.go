package dashboard

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

type nsName struct{ ns, name string }

// fakeResolver is the resolver as the dashboard sees it, with a
// coalescing feed like resolver/kube's: sandboxes by name, unclaimed
// warm-pool pods by pod UID (reported under both keys, as kube does).
type fakeResolver struct {
	mu         sync.Mutex
	sandboxes  map[nsName]resolver.Result
	warm       map[string]resolver.Result
	lifecycles map[nsName]resolver.Lifecycle
	feeds      map[*fakeFeed]struct{}
	subscribes atomic.Int32
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{
		sandboxes:  make(map[nsName]resolver.Result),
		warm:       make(map[string]resolver.Result),
		lifecycles: make(map[nsName]resolver.Lifecycle),
		feeds:      make(map[*fakeFeed]struct{}),
	}
}

func (f *fakeResolver) Snapshot() []resolver.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]resolver.Result, 0, len(f.sandboxes)+len(f.warm))
	for _, r := range f.sandboxes {
		out = append(out, r)
	}
	for _, r := range f.warm {
		out = append(out, r)
	}
	return out
}

func (f *fakeResolver) Lookup(k resolver.Key) resolver.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k.UID == "" {
		return f.sandboxes[nsName{k.Namespace, k.Name}]
	}
	if r, ok := f.warm[k.UID]; ok && r.Namespace == k.Namespace {
		return r
	}
	for _, r := range f.sandboxes {
		if r.UID == k.UID && r.Namespace == k.Namespace {
			return r
		}
	}
	return resolver.Result{}
}

func (f *fakeResolver) Lifecycle(k resolver.Key) (resolver.Lifecycle, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.sandboxes[nsName{k.Namespace, k.Name}]
	if !ok || (k.UID != "" && r.UID != k.UID) {
		return resolver.Lifecycle{}, false
	}
	return f.lifecycles[nsName{k.Namespace, k.Name}], true
}

func (f *fakeResolver) Subscribe() resolver.Feed {
	f.subscribes.Add(1)
	fd := &fakeFeed{r: f, PendingKeys: resolver.NewPendingKeys()}
	f.mu.Lock()
	f.feeds[fd] = struct{}{}
	f.mu.Unlock()
	return fd
}

// fire is called with f.mu held.
func (f *fakeResolver) fire(keys ...resolver.Key) {
	for fd := range f.feeds {
		fd.Add(keys...)
	}
}

// set adds or changes a sandbox.
func (f *fakeResolver) set(r resolver.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sandboxes[nsName{r.Namespace, r.Name}] = r
	f.fire(resolver.Key{Namespace: r.Namespace, Name: r.Name})
}

func (f *fakeResolver) setLifecycle(ns, name string, lc resolver.Lifecycle) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lifecycles[nsName{ns, name}] = lc
}

func (f *fakeResolver) remove(ns, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sandboxes, nsName{ns, name})
	f.fire(resolver.Key{Namespace: ns, Name: name})
}

func (f *fakeResolver) setWarm(r resolver.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.warm[r.UID] = r
	f.fire(resolver.Key{Namespace: r.Namespace, UID: r.UID}, resolver.Key{Namespace: r.Namespace, Name: r.Name})
}

func (f *fakeResolver) removeWarm(ns, uid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.warm[uid]
	delete(f.warm, uid)
	f.fire(resolver.Key{Namespace: ns, UID: uid}, resolver.Key{Namespace: ns, Name: r.Name})
}

type fakeFeed struct {
	r *fakeResolver
	*resolver.PendingKeys
}

func (fd *fakeFeed) Close() {
	fd.r.mu.Lock()
	delete(fd.r.feeds, fd)
	fd.r.mu.Unlock()
}

// fakeActivity is the activator's view.
type fakeActivity struct {
	mu       sync.Mutex
	inFlight map[resolver.Key]int64
	last     map[resolver.Key]time.Time
	held     map[resolver.Key]int
	idle     time.Duration
}

func newFakeActivity(idle time.Duration) *fakeActivity {
	return &fakeActivity{
		inFlight: make(map[resolver.Key]int64),
		last:     make(map[resolver.Key]time.Time),
		held:     make(map[resolver.Key]int),
		idle:     idle,
	}
}

func (a *fakeActivity) State(k resolver.Key) (int64, time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inFlight[k], a.last[k]
}

func (a *fakeActivity) Held() map[resolver.Key]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[resolver.Key]int, len(a.held))
	for k, n := range a.held {
		out[k] = n
	}
	return out
}

func (a *fakeActivity) IdleTimeout(_ string, lc resolver.Lifecycle) time.Duration {
	if lc.IdleTimeoutSet {
		return lc.IdleTimeout
	}
	return a.idle
}

// hiding is a viewer who may not list one namespace.
type hiding string

func (h hiding) MayList(_ context.Context, _ Resource, ns string) bool {
	return h == "" || ns != "" && ns != string(h) // hiding one namespace: not every one ("")
}
func (h hiding) MayGet(context.Context, string, string) bool { return false }

func key(ns, name string) resolver.Key { return resolver.Key{Namespace: ns, Name: name} }

func running(ns, name, uid, ip string) resolver.Result {
	return resolver.Result{State: resolver.StateRunning, Namespace: ns, Name: name, UID: uid, PodIP: netip.MustParseAddr(ip)}
}

func inState(st resolver.State, ns, name, uid string) resolver.Result {
	return resolver.Result{State: st, Namespace: ns, Name: name, UID: uid}
}

// eventually waits for cond, failing the test after a generous deadline:
// no sleeping for luck, no wall-clock assertion.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// start builds a handler over fr and runs it until the test ends.
func start(t testing.TB, opts Options) *Handler {
	t.Helper()
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, "the first snapshot", func() bool { return h.current() != nil })
	return h
}
