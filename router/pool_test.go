package router

// The upstream HTTP/1.1 pool: connections a sandbox spoiled with bytes
// nobody asked for are never reused, the per-endpoint cap holds under an
// HTTP/2 client's fan-out, its wait is bounded, and a stale connection is
// retried whichever attempt met it.

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// rawOrigin is a sandbox written on raw TCP, for misbehaviour net/http
// would not produce: serve is called for each request read on a
// connection (n counts the requests on it, from 1) and writes whatever it
// likes; returning false closes the connection.
type rawOrigin struct {
	port  int
	conns atomic.Int64 // accepted
	open  atomic.Int64 // not yet closed
}

func startRawOrigin(t *testing.T, serve func(c net.Conn, req *http.Request, n int) bool) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{port: ln.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var accepted []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range accepted {
			c.Close() // the router may still pool them
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
			o.conns.Add(1)
			o.open.Add(1)
			wg.Go(func() {
				defer o.open.Add(-1)
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if !serve(c, req, n) {
						return
					}
				}
			})
		}
	})
	return o
}

func (o *rawOrigin) addr() netip.AddrPort { return netip.AddrPortFrom(loopback, uint16(o.port)) }

// TestStrayBytesNeverAnswerTheNextRequest: a sandbox that sends more than
// the response asked for (a second response, a stray body), with the
// response or a moment after it, has its connection dropped: the bytes are
// never read as the answer to the next request.
func TestStrayBytesNeverAnswerTheNextRequest(t *testing.T) {
	const evil = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Evil: 1\r\n\r\nevil"
	cases := []struct {
		name string
		// first writes the answer to a connection's first request and
		// the extra bytes with it (or returns them to be sent later).
		first func(c net.Conn) (later string)
	}{
		{"second response in the same write", func(c net.Conn) string {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"+evil)
			return ""
		}},
		{"stray body bytes in the same write", func(c net.Conn) string {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstXXXX")
			return ""
		}},
		{"chunked body then a second response", func(c net.Conn) string {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n"+evil)
			return ""
		}},
		{"second response after the first was relayed", func(c net.Conn) string {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
			return evil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newProxyEnv(t, nil)
			sendLater := make(chan struct{})
			sentLater := make(chan struct{}, 1)
			var requests atomic.Int64
			origin := startRawOrigin(t, func(c net.Conn, req *http.Request, n int) bool {
				if requests.Add(1) > 1 {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
					return true
				}
				if later := tc.first(c); later != "" {
					select {
					case <-sendLater:
					case <-time.After(waitTimeout):
						return false
					}
					io.WriteString(c, later)
					sentLater <- struct{}{}
				}
				// The connection stays open and answers later requests
				// well: only the stray bytes betray it.
				return true
			})
			client := env.client(viaH1)
			get := func() response {
				return doRequest(client, env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", origin.port, nil))
			}
			if r := get(); r.err != nil || r.status != 200 || r.body != "first" {
				t.Fatalf("first request: %d %q %v", r.status, r.body, r.err)
			}
			close(sendLater)
			if strings.Contains(tc.name, "after") {
				recv(t, sentLater, "the stray response")
				// The bytes are in the router's socket (or the pool
				// dropped the connection already) before the next
				// request is sent: what is tested is the pool's check,
				// not a race with it.
				waitUntil(t, "the stray bytes to reach the router", func() bool {
					idle, spoiled := env.idlePoolConns(origin.addr())
					return idle == 0 || spoiled == idle
				})
			}
			for i := range 3 {
				r := get()
				if r.err != nil || r.status != 200 || r.body != "good" || r.header.Get("X-Evil") != "" {
					t.Fatalf("request %d after the stray bytes: %d %q %v %v; want 200 \"good\" from a new connection", i+2, r.status, r.body, r.header, r.err)
				}
			}
			if n := origin.conns.Load(); n != 2 {
				t.Errorf("%d connections, want 2: the spoiled one dropped, the next one reused", n)
			}
		})
	}
}

// TestConnectionCapPerEndpoint: an HTTP/2 client with many streams to an
// HTTP/1.1 sandbox opens no more connections than the cap; the requests
// over it wait for one and are all served.
func TestConnectionCapPerEndpoint(t *testing.T) {
	const capConns, streams = 3, 24
	env := newProxyEnv(t, func(o *Options) { o.Pool.MaxConnsPerEndpoint = capConns })
	release := make(chan struct{})
	var inHandler, maxOpen atomic.Int64
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inHandler.Add(1)
		<-release
		io.WriteString(w, "ok")
	}), false)
	client := env.client(viaH2C)
	var wg sync.WaitGroup
	results := make(chan response, streams)
	for range streams {
		wg.Go(func() {
			results <- doRequest(client, env.sandboxRequest(context.Background(), viaH2C, http.MethodGet, "/", be.port, nil))
		})
	}
	waitUntil(t, "the cap's connections busy and the rest waiting", func() bool {
		return inHandler.Load() == capConns && env.metric("sandbox_router_upstream_connection_waits_total", nil) == streams-capConns
	})
	maxOpen.Store(be.newConns.Load())
	close(release)
	wg.Wait()
	close(results)
	for r := range results {
		if r.err != nil || r.status != 200 {
			t.Fatalf("request over the cap: %d %v", r.status, r.err)
		}
	}
	if n := be.newConns.Load(); n > capConns {
		t.Fatalf("%d connections to the sandbox, want at most %d", n, capConns)
	}
	if got := env.metric("sandbox_router_upstream_connections", nil); got > capConns {
		t.Errorf("open connections gauge %v over the cap", got)
	}
	if got := env.metric("sandbox_router_upstream_connection_overflows_total", nil); got != 0 {
		t.Errorf("overflows %v, want 0", got)
	}
}

// TestConnectionCapOverflow: the wait for a connection is bounded, in time
// and in the number of waiters; both overflows are answered 503
// upstream_busy with Retry-After and counted, and never reach the sandbox.
func TestConnectionCapOverflow(t *testing.T) {
	env := newProxyEnv(t, func(o *Options) {
		o.Pool.MaxConnsPerEndpoint = 1
		o.Pool.MaxWaitersPerEndpoint = 1
		o.Pool.ConnWaitTimeout = 200 * time.Millisecond
	})
	be := newBusyEndpoint(t, env)
	// The waiter: it waits its 200 ms, then gives up.
	waiter := be.getAsync(context.Background())
	waitUntil(t, "the waiter queued", func() bool { return env.metric("sandbox_router_upstream_connection_waits_total", nil) == 1 })
	// The queue is full: the next is turned away at once.
	checkBusy(t, be.get(context.Background()))
	checkBusy(t, recv(t, waiter, "the waiter's answer"))
	if got := env.metric("sandbox_router_upstream_connection_overflows_total", map[string]string{"reason": "queue_full"}); got != 1 {
		t.Errorf("queue_full overflows = %v, want 1", got)
	}
	if got := env.metric("sandbox_router_upstream_connection_overflows_total", map[string]string{"reason": "timeout"}); got != 1 {
		t.Errorf("timeout overflows = %v, want 1", got)
	}
	if n := be.served.Load(); n != 1 {
		t.Errorf("the sandbox saw %d requests, want only the blocked one", n)
	}
	be.unblock()
	// The connection came back: the endpoint serves again.
	if r := be.get(context.Background()); r.status != 200 {
		t.Fatalf("after the overflow: %d %v", r.status, r.err)
	}
}

// busyEndpoint is a sandbox whose one allowed connection is taken by a
// request that waits until the test unblocks it.
type busyEndpoint struct {
	t       *testing.T
	env     *proxyEnv
	be      *backend
	client  *http.Client
	served  atomic.Int64
	release chan struct{}
	blocked chan response
}

func newBusyEndpoint(t *testing.T, env *proxyEnv) *busyEndpoint {
	t.Helper()
	b := &busyEndpoint{t: t, env: env, client: env.client(viaH2C), release: make(chan struct{})}
	b.be = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.served.Add(1)
		if r.URL.Path == "/block" {
			<-b.release
		}
		io.WriteString(w, "ok")
	}), false)
	t.Cleanup(func() {
		select {
		case <-b.release:
		default:
			close(b.release)
		}
	})
	b.blocked = make(chan response, 1)
	go func() {
		b.blocked <- doRequest(b.client, env.sandboxRequest(context.Background(), viaH2C, http.MethodGet, "/block", b.be.port, nil))
	}()
	waitUntil(t, "the one connection busy", func() bool { return b.served.Load() == 1 })
	return b
}

func (b *busyEndpoint) get(ctx context.Context) response {
	return doRequest(b.client, b.env.sandboxRequest(ctx, viaH2C, http.MethodGet, "/", b.be.port, nil))
}

func (b *busyEndpoint) getAsync(ctx context.Context) <-chan response {
	ch := make(chan response, 1)
	go func() { ch <- b.get(ctx) }()
	return ch
}

// unblock lets the blocked request finish and checks its answer.
func (b *busyEndpoint) unblock() {
	b.t.Helper()
	close(b.release)
	if r := recv(b.t, b.blocked, "the blocked request"); r.status != 200 {
		b.t.Fatalf("blocked request: %d %v", r.status, r.err)
	}
}

func checkBusy(t *testing.T, r response) {
	t.Helper()
	if r.err != nil || r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, CodeUpstreamBusy) || r.header.Get("Retry-After") == "" {
		t.Fatalf("got %d %q (Retry-After %q) %v, want 503 %s with Retry-After", r.status, r.body, r.header.Get("Retry-After"), r.err, CodeUpstreamBusy)
	}
}

// TestConnectionCapWaiterLeaves: a waiting client that leaves frees its
// place in the queue at once, and a connection handed to a waiter that
// just gave up is not lost.
func TestConnectionCapWaiterLeaves(t *testing.T) {
	env := newProxyEnv(t, func(o *Options) {
		o.Pool.MaxConnsPerEndpoint = 1
		o.Pool.MaxWaitersPerEndpoint = 1
		o.Pool.ConnWaitTimeout = time.Hour
	})
	be := newBusyEndpoint(t, env)
	ctx, cancel := context.WithCancel(context.Background())
	left := be.getAsync(ctx)
	waitUntil(t, "the waiter queued", func() bool { return env.metric("sandbox_router_upstream_connection_waits_total", nil) == 1 })
	cancel()
	recv(t, left, "the departed waiter")
	// The client returns at once; the router learns of it when the
	// connection closes. Then only the blocked request is in flight.
	waitUntil(t, "the router to see the waiter leave", func() bool {
		return env.metric("sandbox_router_requests_in_flight", nil) == 1
	})
	// Its place is free: another waits (not a queue_full 503).
	next := be.getAsync(context.Background())
	waitUntil(t, "the next waiter queued", func() bool { return env.metric("sandbox_router_upstream_connection_waits_total", nil) == 2 })
	be.unblock()
	if r := recv(t, next, "the next waiter"); r.status != 200 {
		t.Fatalf("next waiter: %d %v", r.status, r.err)
	}
	if n := be.be.newConns.Load(); n != 1 {
		t.Errorf("%d connections, want the one handed over", n)
	}
}

// movingResolver answers sb1 running at 127.0.0.1, except for the one
// lookup after move, which finds it at 127.0.0.2, where nothing listens:
// a pod replaced between two attempts of one request.
type movingResolver struct {
	moved atomic.Bool
}

func (m *movingResolver) move() { m.moved.Store(true) }

func (m *movingResolver) Lookup(k resolver.Key) resolver.Result {
	if k.Name != "sb1" {
		return resolver.Result{}
	}
	ip := loopback
	if m.moved.Swap(false) {
		ip = netip.MustParseAddr("127.0.0.2")
	}
	return resolver.Result{State: resolver.StateRunning, Namespace: k.Namespace, Name: k.Name, PodIP: ip, Protocol: resolver.ProtocolHTTP1}
}
func (m *movingResolver) Synced() bool { return true }

// TestStaleRetryOnLaterAttempt: a first attempt whose connect fails, then
// a second that meets a stale pooled connection, still gets its one retry
// on a new connection: an idempotent GET is not answered 502.
func TestStaleRetryOnLaterAttempt(t *testing.T) {
	// The sandbox drops the second request of every connection
	// unanswered: a keep-alive connection it closed as the request came.
	origin := startRawOrigin(t, func(c net.Conn, req *http.Request, n int) bool {
		if n > 1 {
			return false
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	res := &movingResolver{}
	env := newProxyEnv(t, func(o *Options) {
		o.Resolver = res
		o.RetryBackoff = time.Millisecond
	})
	client := env.client(viaH1)
	warm := doRequest(client, env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", origin.port, nil))
	if warm.status != 200 {
		t.Fatalf("warm-up: %d %v", warm.status, warm.err)
	}
	if idle, _ := env.idlePoolConns(origin.addr()); idle != 1 {
		t.Fatalf("%d pooled connections, want 1", idle)
	}
	res.move()
	r := doRequest(client, env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", origin.port, nil))
	if r.err != nil || r.status != 200 || r.body != "ok" {
		t.Fatalf("GET after a failed dial and a stale connection: %d %q %v, want 200 from a new connection", r.status, r.body, r.err)
	}
	for reason, want := range map[string]float64{"dial": 1, "stale_connection": 1} {
		if got := env.metric("sandbox_router_upstream_errors_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("%s errors = %v, want %v", reason, got, want)
		}
	}
}
