package router

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// holdingActivator stands in for the activator: it "resumes" a sandbox
// by marking it running in the resolver, or fails with err.
type holdingActivator struct {
	res      *sandboxResolver
	err      error
	calls    atomic.Int64
	released atomic.Int64
}

func (a *holdingActivator) Activate(ctx context.Context, key resolver.Key, port uint16, current resolver.Result) (resolver.Result, func(), error) {
	a.calls.Add(1)
	if a.err != nil {
		return resolver.Result{}, nil, a.err
	}
	a.res.set(key.Namespace, key.Name, resolver.StateRunning, resolver.ProtocolAuto)
	return a.res.Lookup(key), func() { a.released.Add(1) }, nil
}

// countingTracker counts open activity marks per sandbox.
type countingTracker struct {
	mu    sync.Mutex
	open  map[string]int
	begun map[string]int
}

type countingMark struct {
	t    *countingTracker
	name string
}

func (m countingMark) End() {
	m.t.mu.Lock()
	m.t.open[m.name]--
	m.t.mu.Unlock()
}

func (c *countingTracker) Begin(k resolver.Key) Activity {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open[k.Name]++
	c.begun[k.Name]++
	return countingMark{c, k.Name}
}

func (c *countingTracker) counts(name string) (open, begun int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open[name], c.begun[name]
}

// statusError is an activator-style error with a Retry-After.
type statusError struct{}

func (statusError) Error() string          { return "too many requests are waiting" }
func (statusError) HTTPStatus() int        { return http.StatusServiceUnavailable }
func (statusError) ErrorCode() string      { return "hold_queue_full" }
func (statusError) RetryAfterSeconds() int { return 1 }

// TestActivatorRelease: a held request goes to the sandbox once the
// activator releases it, and the router hands its place back as soon as
// the response head arrived, before the body ends.
func TestActivatorRelease(t *testing.T) {
	act := &holdingActivator{}
	env := newProxyEnv(t, func(o *Options) { o.Activator = act })
	act.res = env.res
	env.res.set("default", "sb1", resolver.StateSuspended, resolver.ProtocolAuto)
	bodyGate := make(chan struct{})
	headSeen := make(chan int64, 1)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-bodyGate
		w.Write([]byte("awake"))
	}), false)
	req := env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", be.port, nil)
	resp, err := env.client(viaH1).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	headSeen <- act.released.Load()
	close(bodyGate)
	resp.Body.Close()
	if got := <-headSeen; got != 1 {
		t.Fatalf("released %d times when the head arrived, want 1", got)
	}
	if act.calls.Load() != 1 || act.released.Load() != 1 {
		t.Fatalf("calls %d, released %d; want 1 and 1", act.calls.Load(), act.released.Load())
	}
}

// TestActivatorErrorAnswered: an activator's StatusError is the answer,
// with its Retry-After.
func TestActivatorErrorAnswered(t *testing.T) {
	act := &holdingActivator{err: statusError{}}
	env := newProxyEnv(t, func(o *Options) { o.Activator = act })
	act.res = env.res
	env.res.set("default", "sb1", resolver.StateSuspended, resolver.ProtocolAuto)
	resp, err := env.client(viaH1).Do(env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", freePort(t), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	apiErr, _ := readAPIError(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || apiErr.Code != "hold_queue_full" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("got %d %q Retry-After %q", resp.StatusCode, apiErr.Code, resp.Header.Get("Retry-After"))
	}
}

// TestActivityTracking: every request to a known sandbox is marked from
// start to end, an upgraded connection for its whole life; requests for
// unknown sandboxes are not tracked at all.
func TestActivityTracking(t *testing.T) {
	tr := &countingTracker{open: map[string]int{}, begun: map[string]int{}}
	env := newProxyEnv(t, func(o *Options) { o.Activity = tr })
	sb := startWSSandbox(t)

	r := doRequest(env.client(viaH1), env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", sb.port, nil))
	if r.err != nil {
		t.Fatal(r.err)
	}
	waitUntil(t, "the request's mark to end", func() bool { open, begun := tr.counts("sb1"); return open == 0 && begun == 1 })

	req := env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", sb.port, nil)
	req.Header.Set(HeaderSandboxID, "nobody")
	if r := doRequest(env.client(viaH1), req); r.status != http.StatusNotFound {
		t.Fatalf("unknown sandbox: %d", r.status)
	}
	if _, begun := tr.counts("nobody"); begun != 0 {
		t.Fatal("an unknown sandbox was tracked")
	}

	c, resp, err := wsDial(t, env, sb, false, "")
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	recv(t, sb.handshakes, "the handshake")
	if open, _ := tr.counts("sb1"); open != 1 {
		t.Fatalf("open WebSocket: %d marks open, want 1", open)
	}
	c.Close(websocket.StatusNormalClosure, "done")
	recv(t, sb.ended, "the close at the sandbox")
	waitUntil(t, "the WebSocket's mark to end", func() bool { open, begun := tr.counts("sb1"); return open == 0 && begun == 2 })
}
