package activator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// activateAndRelease holds a request until it is released, as the router
// does, and frees its place at once.
func activateAndRelease(t *testing.T, a *Activator, k resolver.Key, port uint16) {
	t.Helper()
	_, release, err := a.Activate(context.Background(), k, port, resolver.Result{})
	if err != nil {
		t.Fatal(err)
	}
	release()
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *activator.Error", err, err)
	}
	return e
}

// TestManyHeldOneResume: 200 requests held for one suspended sandbox cause
// one resume, and are all released to the pod once it accepts connections.
func TestManyHeldOneResume(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	sb.set(k, resolver.Result{State: resolver.StateSuspended, UID: "u1"}, resolver.Lifecycle{})
	_, port := listen(t)
	w := &fakeWaker{}
	w.onResume = func(resolver.Key) error {
		go func() {
			sb.setState(k, resolver.StateStarting, netip0)
			sb.setState(k, resolver.StateRunning, loopback)
		}()
		return nil
	}
	a := newTestActivator(t, sb, w, nil)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, release, err := a.Activate(context.Background(), resolver.Key{Namespace: "ns", Name: "a", UID: "u1"}, port, resolver.Result{})
			if err != nil {
				errs <- err
				return
			}
			defer release()
			if res.State != resolver.StateRunning || res.PodIP != loopback {
				errs <- fmt.Errorf("released with %+v", res)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := w.resumes.Load(); got != 1 {
		t.Errorf("resumes = %d, want 1", got)
	}
	// The episode's goroutine ends after it released its waiters.
	eventually(t, "nothing held and the episode ended", func() bool { return a.heldNow() == 0 && a.episodeCount() == 0 })
}

// TestProbeWaitsForPort: a pod reported running whose port does not accept
// connections yet holds its requests until it does.
func TestProbeWaitsForPort(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	port := freePort(t)
	sb.set(k, resolver.Result{State: resolver.StateRunning, PodIP: loopback}, resolver.Lifecycle{})
	var dials sync.WaitGroup
	dials.Add(2) // release the port only after the probe failed twice
	var once sync.Once
	var n int
	var mu sync.Mutex
	a := newTestActivator(t, sb, &fakeWaker{}, func(o *Options) {
		d := &net.Dialer{}
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			mu.Lock()
			if n++; n <= 2 {
				dials.Done()
			}
			mu.Unlock()
			return c, err
		}
	})
	done := make(chan error, 1)
	go func() {
		_, release, err := a.Activate(context.Background(), k, port, resolver.Result{})
		if release != nil {
			release()
		}
		done <- err
	}()
	dials.Wait()
	select {
	case err := <-done:
		t.Fatalf("released before the port accepted connections: %v", err)
	default:
	}
	once.Do(func() {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Skipf("port %d taken meanwhile: %v", port, err)
		}
		t.Cleanup(func() { ln.Close() })
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestHoldTimeout: a sandbox that does not come up in its hold timeout
// (from its annotation) gives 504, and the resume was still sent.
func TestHoldTimeout(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "slow")
	sb.set(k, resolver.Result{State: resolver.StateSuspended}, resolver.Lifecycle{HoldTimeout: 50 * time.Millisecond, HoldTimeoutSet: true})
	w := &fakeWaker{}
	a := newTestActivator(t, sb, w, nil)
	_, _, err := a.Activate(context.Background(), k, 80, resolver.Result{})
	if e := asError(t, err); e.Status != http.StatusGatewayTimeout || e.Code != CodeResumeTimeout {
		t.Fatalf("got %d %s, want 504 %s", e.Status, e.Code, CodeResumeTimeout)
	}
	if w.resumes.Load() != 1 {
		t.Fatalf("resumes = %d, want 1", w.resumes.Load())
	}
	eventually(t, "episode to end", func() bool { return a.episodeCount() == 0 && a.heldNow() == 0 })
}

// TestRequestDeadline: the request's own deadline, shorter than the hold
// timeout, ends the hold with 504 too.
func TestRequestDeadline(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "slow")
	sb.set(k, resolver.Result{State: resolver.StateStarting}, resolver.Lifecycle{})
	a := newTestActivator(t, sb, &fakeWaker{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err := a.Activate(ctx, k, 80, resolver.Result{})
	if e := asError(t, err); e.Status != http.StatusGatewayTimeout {
		t.Fatalf("got %d, want 504", e.Status)
	}
}

// TestClientGoneFreesPlace: a client that gives up leaves at once and its
// place is free for another.
func TestClientGoneFreesPlace(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	sb.set(k, resolver.Result{State: resolver.StateStarting}, resolver.Lifecycle{})
	a := newTestActivator(t, sb, &fakeWaker{}, func(o *Options) { o.MaxHeldPerSandbox = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := a.Activate(ctx, k, 80, resolver.Result{})
		done <- err
	}()
	eventually(t, "request held", func() bool { return a.heldNow() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if a.heldNow() != 0 {
		t.Fatalf("held = %d after the client left", a.heldNow())
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, _, err := a.Activate(ctx2, k, 80, resolver.Result{}); asError(t, err).Code != CodeResumeTimeout {
		t.Fatalf("second request: %v, want it admitted (then timed out)", err)
	}
}

// TestOverflow: beyond the per-sandbox and total bounds requests get 503
// with Retry-After at once.
func TestOverflow(t *testing.T) {
	sb := newFakeSandboxes()
	for _, n := range []string{"a", "b"} {
		sb.set(nameKey("ns", n), resolver.Result{State: resolver.StateStarting}, resolver.Lifecycle{})
	}
	a := newTestActivator(t, sb, &fakeWaker{}, func(o *Options) { o.MaxHeldPerSandbox = 2; o.MaxHeldTotal = 3 })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hold := func(name string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Activate(ctx, nameKey("ns", name), 80, resolver.Result{})
		}()
	}
	hold("a")
	hold("a")
	eventually(t, "two held", func() bool { return a.heldNow() == 2 })
	_, _, err := a.Activate(context.Background(), nameKey("ns", "a"), 80, resolver.Result{})
	if e := asError(t, err); e.Status != http.StatusServiceUnavailable || e.Code != CodeHoldQueueFull || e.RetryAfter == 0 {
		t.Fatalf("per-sandbox overflow: %+v", e)
	}
	hold("b")
	eventually(t, "three held", func() bool { return a.heldNow() == 3 })
	_, _, err = a.Activate(context.Background(), nameKey("ns", "b"), 80, resolver.Result{})
	if e := asError(t, err); e.Status != http.StatusServiceUnavailable || e.Code != CodeHoldQueueFull {
		t.Fatalf("total overflow: %+v", e)
	}
	cancel()
	wg.Wait()
}

// TestFailFast: a sandbox deleted or finished while requests wait, or one
// the router may not resume, fails them at once with a clear code.
func TestFailFast(t *testing.T) {
	for _, tc := range []struct {
		name   string
		act    func(sb *fakeSandboxes, k resolver.Key)
		resume error
		status int
		code   string
	}{
		{"deleted", func(sb *fakeSandboxes, k resolver.Key) { sb.setState(k, resolver.StateUnknown, netip0) }, nil, http.StatusNotFound, CodeSandboxDeleted},
		{"finished", func(sb *fakeSandboxes, k resolver.Key) { sb.setState(k, resolver.StateFinished, netip0) }, nil, http.StatusGone, CodeSandboxFinished},
		{"forbidden", nil, fmt.Errorf("patch: %w", ErrForbidden), http.StatusServiceUnavailable, CodeResumeFailed},
		{"not found", nil, fmt.Errorf("patch: %w", ErrNotFound), http.StatusNotFound, CodeSandboxDeleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := newFakeSandboxes()
			k := nameKey("ns", "a")
			sb.set(k, resolver.Result{State: resolver.StateSuspended}, resolver.Lifecycle{})
			w := &fakeWaker{onResume: func(resolver.Key) error { return tc.resume }}
			a := newTestActivator(t, sb, w, nil)
			done := make(chan error, 1)
			go func() {
				_, _, err := a.Activate(context.Background(), k, 80, resolver.Result{})
				done <- err
			}()
			if tc.act != nil {
				eventually(t, "resume", func() bool { return w.resumes.Load() == 1 })
				tc.act(sb, k)
			}
			e := asError(t, <-done)
			if e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("got %d %s, want %d %s", e.Status, e.Code, tc.status, tc.code)
			}
			eventually(t, "episode to end", func() bool { return a.episodeCount() == 0 })
		})
	}
}

// TestTransientResumeRetried: an API error that may pass is retried.
func TestTransientResumeRetried(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	sb.set(k, resolver.Result{State: resolver.StateSuspended}, resolver.Lifecycle{})
	_, port := listen(t)
	w := &fakeWaker{}
	w.onResume = func(resolver.Key) error {
		if w.resumes.Load() < 3 {
			return errors.New("etcd is busy")
		}
		go sb.setState(k, resolver.StateRunning, loopback)
		return nil
	}
	a := newTestActivator(t, sb, w, nil)
	activateAndRelease(t, a, k, port)
	if w.resumes.Load() != 3 {
		t.Fatalf("resumes = %d, want 3", w.resumes.Load())
	}
}

// TestSuspendingResumes: a request that arrives while the sandbox is being
// suspended resumes it without waiting for the pod to be gone.
func TestSuspendingResumes(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	sb.set(k, resolver.Result{State: resolver.StateSuspending}, resolver.Lifecycle{})
	_, port := listen(t)
	w := &fakeWaker{}
	w.onResume = func(resolver.Key) error {
		go func() {
			sb.setState(k, resolver.StateSuspended, netip0) // the old pod goes first
			sb.setState(k, resolver.StateStarting, netip0)
			sb.setState(k, resolver.StateRunning, loopback)
		}()
		return nil
	}
	a := newTestActivator(t, sb, w, nil)
	activateAndRelease(t, a, k, port)
	if w.resumes.Load() != 1 {
		t.Fatalf("resumes = %d, want 1 (the suspended view after the resume is old news)", w.resumes.Load())
	}
}

// TestSuspendedAgainResumesAgain: a sandbox seen running after the resume
// and then suspended again (someone suspended it anew) is resumed again.
func TestSuspendedAgainResumesAgain(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	sb.set(k, resolver.Result{State: resolver.StateSuspended}, resolver.Lifecycle{})
	_, port := listen(t)
	w := &fakeWaker{}
	w.onResume = func(resolver.Key) error {
		n := w.resumes.Load()
		go func() {
			sb.setState(k, resolver.StateStarting, netip0)
			if n == 1 {
				// Suspended anew once the episode saw it starting.
				eventually(t, "starting seen", func() bool { return sb.looked(resolver.StateStarting) > 0 })
				sb.setState(k, resolver.StateSuspended, netip0)
				return
			}
			sb.setState(k, resolver.StateRunning, loopback)
		}()
		return nil
	}
	a := newTestActivator(t, sb, w, nil)
	activateAndRelease(t, a, k, port)
	if w.resumes.Load() != 2 {
		t.Fatalf("resumes = %d, want 2", w.resumes.Load())
	}
}

// TestReleaseConcurrency: at most ReleaseConcurrency released requests
// wait for their response head at once.
func TestReleaseConcurrency(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	_, port := listen(t)
	sb.set(k, resolver.Result{State: resolver.StateRunning, PodIP: loopback}, resolver.Lifecycle{})
	var a3 *Activator
	a := newTestActivator(t, sb, &fakeWaker{}, func(o *Options) {
		o.ReleaseConcurrency = 2
		// All three join one episode: its probe waits until they are in.
		var d net.Dialer
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			eventually(t, "three requests held", func() bool { return a3.heldNow() == 3 })
			return d.DialContext(ctx, network, addr)
		}
	})
	a3 = a
	var releases = make(chan func(), 3)
	for i := 0; i < 3; i++ {
		go func() {
			_, release, err := a.Activate(context.Background(), k, port, resolver.Result{})
			if err != nil {
				t.Error(err)
				return
			}
			releases <- release
		}()
	}
	r1, r2 := <-releases, <-releases
	select {
	case <-releases:
		t.Fatal("a third request was released while two awaited their head")
	case <-time.After(20 * time.Millisecond):
		// Not a timing assertion: the third must not come at all until
		// a place is freed; 20ms only bounds how long we look.
	}
	r1()
	r3 := <-releases
	r2()
	r3()
}

// TestUIDReplaced: a request pinned to a UID is not released to a new
// sandbox of the same name.
func TestUIDReplaced(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	_, port := listen(t)
	sb.set(k, resolver.Result{State: resolver.StateStarting, UID: "old"}, resolver.Lifecycle{})
	a := newTestActivator(t, sb, &fakeWaker{}, nil)
	done := make(chan error, 1)
	go func() {
		_, _, err := a.Activate(context.Background(), resolver.Key{Namespace: "ns", Name: "a", UID: "old"}, port, resolver.Result{})
		done <- err
	}()
	eventually(t, "held", func() bool { return a.heldNow() == 1 })
	sb.set(k, resolver.Result{State: resolver.StateRunning, UID: "new", PodIP: loopback}, resolver.Lifecycle{})
	if e := asError(t, <-done); e.Code != CodeSandboxDeleted {
		t.Fatalf("code %s, want %s", e.Code, CodeSandboxDeleted)
	}
}

// TestPortsBounded: ports whose waiters left are forgotten (not probed),
// and one sandbox's held requests cannot ask for more than
// maxPortsPerSandbox ports at once.
func TestPortsBounded(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	sb.set(k, resolver.Result{State: resolver.StateStarting}, resolver.Lifecycle{})
	a := newTestActivator(t, sb, &fakeWaker{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Activate(ctx, k, 80, resolver.Result{}) // keeps the episode alive
	eventually(t, "held", func() bool { return a.heldNow() == 1 })
	for port := uint16(1000); port < 1100; port++ {
		c, stop := context.WithCancel(context.Background())
		stop()
		a.Activate(c, k, port, resolver.Result{})
	}
	a.mu.Lock()
	n := len(a.episodes[nsName{"ns", "a"}].ports)
	a.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d ports kept after their waiters left, want 1", n)
	}
	for port := uint16(2000); port < 2000+maxPortsPerSandbox-1; port++ {
		go a.Activate(ctx, k, port, resolver.Result{})
	}
	eventually(t, "all held", func() bool { return a.heldNow() == maxPortsPerSandbox })
	_, _, err := a.Activate(context.Background(), k, 3000, resolver.Result{})
	if e := asError(t, err); e.Code != CodeHoldQueueFull {
		t.Fatalf("one port too many: %s", e.Code)
	}
}

// TestWarmPodStarting: a starting pod that is not a Sandbox (a warm-pool
// pod reached by UID) is answered 503 sandbox_starting, not held.
func TestWarmPodStarting(t *testing.T) {
	sb := newFakeSandboxes()
	a := newTestActivator(t, sb, &fakeWaker{}, nil)
	_, _, err := a.Activate(context.Background(), resolver.Key{Namespace: "ns", Name: "pool-x", UID: "u"}, 80, resolver.Result{State: resolver.StateStarting})
	if e := asError(t, err); e.Status != http.StatusServiceUnavailable || e.Code != "sandbox_starting" {
		t.Fatalf("got %d %s", e.Status, e.Code)
	}
}

// TestNoResumeForNobody: a resume failing with a transient error is not
// retried once every waiter left, and the episode ends.
func TestNoResumeForNobody(t *testing.T) {
	sb := newFakeSandboxes()
	k := nameKey("ns", "a")
	sb.set(k, resolver.Result{State: resolver.StateSuspended}, resolver.Lifecycle{})
	w := &fakeWaker{onResume: func(resolver.Key) error { return errors.New("webhook down") }}
	a := newTestActivator(t, sb, w, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Activate(ctx, k, 80, resolver.Result{}); close(done) }()
	eventually(t, "a retried resume", func() bool { return w.resumes.Load() >= 2 })
	cancel()
	<-done
	eventually(t, "the episode to end", func() bool { return a.episodeCount() == 0 })
	n := w.resumes.Load()
	// Another request would start a new episode; without one nothing
	// more is sent. (Bounded look: the episode is gone, so no goroutine
	// is left that could send.)
	if a.episodeCount() != 0 || w.resumes.Load() > n+1 {
		t.Fatalf("resumes went on: %d -> %d", n, w.resumes.Load())
	}
}
