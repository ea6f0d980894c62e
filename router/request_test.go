package router

// The client's deadline (X-Sandbox-Timeout) and cancellation that does
// not depend on the response header timeout.

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func TestClientTimeoutParse(t *testing.T) {
	const max = time.Hour
	cases := []struct {
		v       string
		want    time.Duration
		present bool
		ok      bool
	}{
		{"", 0, false, true},
		{"30", 30 * time.Second, true, true},
		{"4.5", 4500 * time.Millisecond, true, true},
		{"123.0", 123 * time.Second, true, true},
		{"0.001", time.Millisecond, true, true},
		{"7200", max, true, true}, // capped
		{"99999999999999999999", max, true, true},
		{"0", 0, false, false},
		{"0.0", 0, false, false},
		{"-1", 0, false, false},
		{"+1", 0, false, false},
		{"1e3", 0, false, false},
		{"0x10", 0, false, false},
		{"Inf", 0, false, false},
		{"NaN", 0, false, false},
		{"1.2.3", 0, false, false},
		{".5", 0, false, false},
		{"5.", 0, false, false},
		{"1_000", 0, false, false},
		{" 5", 0, false, false},
		{"0.0000000000001", 0, false, false}, // below a nanosecond
	}
	for _, c := range cases {
		h := http.Header{}
		if c.v != "" {
			h.Set(HeaderSandboxTimeout, c.v)
		}
		d, present, ok := clientTimeout(h, max)
		if d != c.want || present != c.present || ok != c.ok {
			t.Errorf("%q: got %v %v %v, want %v %v %v", c.v, d, present, ok, c.want, c.present, c.ok)
		}
	}
}

// TestClientTimeout: X-Sandbox-Timeout is the deadline of the whole
// request: a sandbox that does not answer in time gets the client a 504,
// the sandbox's request is cancelled, a malformed value is a 400, and the
// cap applies.
func TestClientTimeout(t *testing.T) {
	stalled := make(chan struct{})
	defer close(stalled)
	var cancelled atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall" {
			select {
			case <-r.Context().Done():
				cancelled.Add(1)
			case <-stalled:
			}
			return
		}
		w.Write([]byte("ok"))
	})
	for _, upstream := range []resolver.Protocol{resolver.ProtocolHTTP1, resolver.ProtocolH2C} {
		be := startBackend(t, handler, upstream == resolver.ProtocolH2C)
		for _, proto := range []string{viaH1, viaH2C, viaH2} {
			t.Run(proto+" to "+map[resolver.Protocol]string{resolver.ProtocolHTTP1: "http1", resolver.ProtocolH2C: "h2c"}[upstream], func(t *testing.T) {
				env := newProxyEnv(t, func(o *Options) { o.MaxClientTimeout = 300 * time.Millisecond })
				env.res.set("default", "sb1", resolver.StateRunning, upstream)
				client := env.client(proto)
				send := func(path, timeout string) response {
					req := env.sandboxRequest(context.Background(), proto, http.MethodGet, path, be.port, nil)
					req.Header.Set(HeaderSandboxTimeout, timeout)
					return doRequest(client, req)
				}
				before := cancelled.Load()
				if r := send("/stall", "0.1"); r.status != http.StatusGatewayTimeout || !strings.Contains(r.body, CodeUpstreamTimeout) {
					t.Fatalf("stalled sandbox with a 0.1 s deadline: %d %q %v, want 504 %s", r.status, r.body, r.err, CodeUpstreamTimeout)
				}
				waitUntil(t, "the sandbox's request cancelled", func() bool { return cancelled.Load() == before+1 })
				// 3600 s is capped to MaxClientTimeout.
				if r := send("/stall", "3600"); r.status != http.StatusGatewayTimeout {
					t.Fatalf("capped deadline: %d %q %v, want 504", r.status, r.body, r.err)
				}
				if r := send("/", "30"); r.status != 200 || r.body != "ok" {
					t.Fatalf("in time: %d %q %v", r.status, r.body, r.err)
				}
				r := send("/", "soon")
				if r.status != http.StatusBadRequest || !strings.Contains(r.body, CodeInvalidTimeout) {
					t.Fatalf("malformed deadline: %d %q, want 400 %s", r.status, r.body, CodeInvalidTimeout)
				}
				if got := env.metric("sandbox_router_requests_total", map[string]string{"code": "504"}); got != 2 {
					t.Errorf("504s counted %v, want 2", got)
				}
			})
		}
	}
}

// TestClientTimeoutWhileHeld: the deadline counts the time a request is
// held for a resume.
func TestClientTimeoutWhileHeld(t *testing.T) {
	res := newSandboxResolver()
	env := newProxyEnv(t, func(o *Options) {
		o.Resolver = res
		o.Activator = stallingActivator{}
	})
	res.set("default", "sb1", resolver.StateSuspended, resolver.ProtocolAuto)
	req := env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", 8888, nil)
	req.Header.Set(HeaderSandboxTimeout, "0.05")
	r := doRequest(env.client(viaH1), req)
	if r.status != http.StatusGatewayTimeout {
		t.Fatalf("held past the deadline: %d %q %v, want 504", r.status, r.body, r.err)
	}
}

// stallingActivator never resumes anything: it returns when the request's
// context ends, with a 504 for a deadline as the real activator does.
type stallingActivator struct{}

func (stallingActivator) Activate(ctx context.Context, key resolver.Key, port uint16, current resolver.Result) (resolver.Result, func(), error) {
	<-ctx.Done()
	if ctx.Err() == context.DeadlineExceeded {
		return resolver.Result{}, nil, errUpstreamTimeout
	}
	return resolver.Result{}, nil, ctx.Err()
}

// afterLeaveActivator releases each request only once its client has
// gone: the router then forwards with a context already cancelled.
type afterLeaveActivator struct{ res *sandboxResolver }

func (a afterLeaveActivator) Activate(ctx context.Context, key resolver.Key, port uint16, current resolver.Result) (resolver.Result, func(), error) {
	<-ctx.Done()
	a.res.set(key.Namespace, key.Name, resolver.StateRunning, resolver.ProtocolHTTP1)
	res := a.res.Lookup(key)
	a.res.set(key.Namespace, key.Name, resolver.StateSuspended, resolver.ProtocolHTTP1)
	return res, nil, nil
}

// TestDepartedClientWithHeaderTimeout: with a response header timeout set,
// a client that left is still noticed at once: the sandbox's connection
// is closed, not read until the header timeout (an hour here) passes. The
// cancel and the header deadline used to race over the connection's
// deadline, and the cancel could lose.
func TestDepartedClientWithHeaderTimeout(t *testing.T) {
	res := newSandboxResolver()
	env := newProxyEnv(t, func(o *Options) {
		o.Resolver = res
		o.Activator = afterLeaveActivator{res}
		o.ResponseHeaderTimeout = time.Hour
	})
	// The sandbox answers /warm and never answers anything else.
	origin := startRawOrigin(t, func(c net.Conn, req *http.Request, n int) bool {
		if req.URL.Path == "/warm" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		}
		var b [1]byte
		c.Read(b[:]) // until the router closes the connection
		return false
	})
	client := env.client(viaH1)
	for i := range 20 {
		// A pooled connection, so that the forward after the hold does
		// not dial (a dial sees the cancelled context at once).
		res.set("default", "sb1", resolver.StateRunning, resolver.ProtocolHTTP1)
		if r := doRequest(client, env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/warm", origin.port, nil)); r.status != 200 {
			t.Fatalf("warm-up: %d %v", r.status, r.err)
		}
		res.set("default", "sb1", resolver.StateSuspended, resolver.ProtocolHTTP1)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan response, 1)
		go func() {
			done <- doRequest(client, env.sandboxRequest(ctx, viaH1, http.MethodGet, "/", origin.port, nil))
		}()
		waitUntil(t, "the request held", func() bool { return env.metric("sandbox_router_requests_in_flight", nil) == 1 })
		cancel()
		recv(t, done, "the client's end")
		waitUntil(t, "the sandbox's connection closed and the request ended", func() bool {
			return origin.open.Load() == 0 && env.metric("sandbox_router_requests_in_flight", nil) == 0
		})
		_ = i
	}
}
