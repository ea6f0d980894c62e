package faults_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/router"
)

// waitTimeout bounds every wait for a condition: a deadline against
// hangs, not an expectation of how long things take.
const waitTimeout = 20 * time.Second

var loopback = netip.MustParseAddr("127.0.0.1")

// sandboxes is a resolver in which every sandbox runs at 127.0.0.1; the
// request's port picks the origin.
type sandboxes struct{}

func (sandboxes) Lookup(k resolver.Key) resolver.Result {
	return resolver.Result{State: resolver.StateRunning, Namespace: k.Namespace, Name: k.Name, PodIP: loopback}
}
func (sandboxes) Synced() bool { return true }

// origin is a sandbox on raw TCP: handle owns each accepted connection.
// It counts the connections still open on its side.
type origin struct {
	port int
	open atomic.Int64
}

func startOrigin(t *testing.T, handle func(c net.Conn, br *bufio.Reader)) *origin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &origin{port: ln.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
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
			conns = append(conns, c)
			mu.Unlock()
			o.open.Add(1)
			wg.Go(func() {
				defer o.open.Add(-1)
				defer c.Close()
				handle(c, bufio.NewReader(c))
			})
		}
	})
	return o
}

// untilClosed blocks until the peer closes c (or resets it).
func untilClosed(c net.Conn) {
	_, _ = io.Copy(io.Discard, c)
}

// reset closes c with a TCP RST instead of a FIN.
func reset(c net.Conn) {
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// env is a router on 127.0.0.1 (HTTP/1.1 and h2c on one port) with short
// upstream idle timeouts, so that idle connections age out within the
// test and the leak check can see everything closed.
type env struct {
	t    *testing.T
	addr string
	reg  *prometheus.Registry

	mu      sync.Mutex
	clients []*http.Transport
}

func newEnv(t *testing.T) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	rt, err := router.New(router.Options{
		Resolver:           sandboxes{},
		AllowLoopbackPodIP: true,
		Metrics:            router.NewMetrics(reg),
		Pool:               router.PoolOptions{IdleTimeout: time.Second},
		RetryBackoff:       time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := router.NewServer(rt, router.ServerOptions{
		HTTPAddr:          "127.0.0.1:0",
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		DrainTimeout:      5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Server.Run: %v", err)
		}
		rt.Close()
	})
	return &env{t: t, addr: srv.HTTPAddr(), reg: reg}
}

// client speaks HTTP/1.1 or h2c (prior knowledge) to the router.
func (e *env) client(h2c bool) *http.Client {
	var p http.Protocols
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	tr := &http.Transport{Protocols: &p, DisableCompression: true}
	e.mu.Lock()
	e.clients = append(e.clients, tr)
	e.mu.Unlock()
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// closeClients closes every client's idle connections to the router.
func (e *env) closeClients() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, tr := range e.clients {
		tr.CloseIdleConnections()
	}
}

// request builds a request for sandbox name on port.
func (e *env) request(ctx context.Context, name string, port int, path string) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.addr+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set(router.HeaderSandboxID, name)
	req.Header.Set(router.HeaderSandboxPort, strconv.Itoa(port))
	return req
}

// gauge sums a gauge or counter family.
func (e *env) gauge(name string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += value(m)
			}
		}
	}
	return sum
}

func value(m *dto.Metric) float64 {
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.GetCounter().GetValue()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// load sends requests to the healthy sandbox until stopped, over both
// client protocols, and counts what went wrong.
type load struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	served   atomic.Int64
	failures atomic.Int64
	mu       sync.Mutex
	first    error
}

func startLoad(e *env, port int) *load {
	l := &load{stop: make(chan struct{})}
	for i := range 4 {
		client := e.client(i%2 == 1)
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := client.Do(e.request(context.Background(), "healthy", port, "/"))
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != 200 || string(body) != "healthy") {
						err = fmt.Errorf("status %d body %q", resp.StatusCode, body)
					}
				}
				if err != nil {
					l.failures.Add(1)
					l.mu.Lock()
					if l.first == nil {
						l.first = err
					}
					l.mu.Unlock()
					continue
				}
				l.served.Add(1)
			}
		})
	}
	return l
}

func (l *load) end() (served, failures int64, first error) {
	close(l.stop)
	l.wg.Wait()
	return l.served.Load(), l.failures.Load(), l.first
}

// TestFaultyOriginsDoNotHurtOthers runs every fault while a healthy
// sandbox takes steady traffic, then checks for leaks.
func TestFaultyOriginsDoNotHurtOthers(t *testing.T) {
	e := newEnv(t)
	healthy := startOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhealthy"); err != nil {
				return
			}
		}
	})
	// Baseline: the router has served once and its pool has aged out.
	warm := e.client(false)
	if resp, err := warm.Do(e.request(context.Background(), "healthy", healthy.port, "/")); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	e.closeClients()
	waitUntil(t, "the warm-up connection to age out", func() bool { return healthy.open.Load() == 0 })
	settle := func() (int, int) {
		runtime.GC()
		return runtime.NumGoroutine(), openFDs(t)
	}
	baseGoroutines, baseFDs := settle()

	l := startLoad(e, healthy.port)
	origins := []*origin{healthy}
	for _, f := range faults {
		for _, h2c := range []bool{false, true} {
			name := f.name
			switch {
			case f.http1Only && h2c:
				continue
			case f.http1Only:
			case h2c:
				name += "/h2c"
			default:
				name += "/http1"
			}
			t.Run(name, func(t *testing.T) {
				origins = append(origins, f.run(t, e, h2c)...)
			})
		}
	}
	served, failures, first := l.end()
	if failures != 0 || served == 0 {
		t.Errorf("the healthy sandbox: %d served, %d failed (first: %v) while the others misbehaved", served, failures, first)
	}

	// Nothing outlives the faults: every origin's connections close (the
	// pool ages idle ones out), goroutines and descriptors go back to the
	// baseline, and the gauges to zero.
	e.closeClients()
	waitUntil(t, "every sandbox connection closed", func() bool {
		for _, o := range origins {
			if o.open.Load() != 0 {
				return false
			}
		}
		return true
	})
	var goroutines, fds int
	deadline := time.Now().Add(waitTimeout)
	for {
		goroutines, fds = settle()
		if goroutines <= baseGoroutines && fds <= baseFDs {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("leak: %d goroutines (baseline %d), %d descriptors (baseline %d)\n%s",
				goroutines, baseGoroutines, fds, baseFDs, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, g := range []string{"sandbox_router_upstream_connections", "sandbox_router_upgraded_connections", "sandbox_router_requests_in_flight"} {
		if v := e.gauge(g); v != 0 {
			t.Errorf("%s = %v after the faults", g, v)
		}
	}
	t.Logf("healthy sandbox served %d requests during the faults; goroutines %d (baseline %d), descriptors %d (baseline %d)",
		served, goroutines, baseGoroutines, fds, baseFDs)
}

// fault is one way a sandbox misbehaves; run starts its origins, drives
// requests at them and checks the answers.
type fault struct {
	name      string
	http1Only bool // run once: upgrades exist in HTTP/1.1 only, gRPC picks h2c itself
	run       func(t *testing.T, e *env, h2c bool) []*origin
}

var faults = []fault{
	{name: "reset mid-body", run: resetMidBody},
	{name: "bytes after the response", run: extraBytes},
	{name: "trailers-only grpc error", http1Only: true, run: grpcTrailersOnly},
	{name: "close during upgrade", http1Only: true, run: closeDuringUpgrade},
	{name: "stall", run: stall},
}

// resetMidBody: the sandbox resets the connection in the middle of a body
// of known length and of a chunked one. The client must see a broken
// response (or a 502 if the head was lost with the reset), never a
// complete-looking short one.
func resetMidBody(t *testing.T, e *env, h2c bool) []*origin {
	o := startOrigin(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		part := strings.Repeat("x", 64<<10)
		if req.URL.Path == "/chunked" {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(part), part)
		} else {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"+part)
		}
		reset(c)
	})
	client := e.client(h2c)
	for _, path := range []string{"/length", "/chunked"} {
		resp, err := client.Do(e.request(context.Background(), "resetting", o.port, path))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusBadGateway:
		case resp.StatusCode == 200 && err != nil:
		default:
			t.Errorf("%s: %d with %d bytes and error %v; a cut response must not look complete", path, resp.StatusCode, len(body), err)
		}
	}
	return []*origin{o}
}

// extraBytes: every answer carries a second, unsolicited response in the
// same write. Each request must get its own answer.
func extraBytes(t *testing.T, e *env, h2c bool) []*origin {
	var n atomic.Int64
	o := startOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			body := "answer-" + strconv.FormatInt(n.Add(1), 10)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%sHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil", len(body), body)
		}
	})
	client := e.client(h2c)
	for i := range 5 {
		resp, err := client.Do(e.request(context.Background(), "chatty", o.port, "/"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "answer-") {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	return []*origin{o}
}

// grpcTrailersOnly: a gRPC sandbox answers with a status and no message.
// The client must get that status, not Internal.
func grpcTrailersOnly(t *testing.T, e *env, _ bool) []*origin {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	counted := &countingListener{Listener: ln}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("known", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(counted)
	t.Cleanup(srv.Stop)

	cc, err := grpc.NewClient("passthrough:///"+e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-sandbox-id", "grpc", "x-sandbox-port", strconv.Itoa(port))
	hc := healthpb.NewHealthClient(cc)
	for range 3 {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"}); status.Code(err) != codes.NotFound {
			t.Fatalf("Check(unknown) = %v, want NotFound", err)
		}
		if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "known"}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(known) = %v %v", resp, err)
		}
	}
	return []*origin{&counted.origin}
}

// countingListener counts a net/http or gRPC server's open connections.
type countingListener struct {
	net.Listener
	origin origin
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.origin.open.Add(1)
	return &countedConn{Conn: c, open: &l.origin.open}, nil
}

type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// closeDuringUpgrade: the sandbox closes before its 101, right after it,
// or resets the spliced connection after echoing.
func closeDuringUpgrade(t *testing.T, e *env, _ bool) []*origin {
	o := startOrigin(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		switch req.URL.Path {
		case "/before-101":
			return
		case "/half-101":
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
			return
		case "/after-101":
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			return
		case "/reset-after-echo":
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			var b [4]byte
			if _, err := io.ReadFull(br, b[:]); err == nil {
				c.Write(b[:])
			}
			reset(c)
		}
	})
	upgrade := func(path string) (status int, rest string, err error) {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(waitTimeout))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nX-Sandbox-Id: upgrader\r\nX-Sandbox-Port: %d\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", path, o.port)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, "", err
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			io.Copy(io.Discard, resp.Body)
			return resp.StatusCode, "", nil
		}
		c.Write([]byte("ping"))
		b, err := io.ReadAll(br)
		return resp.StatusCode, string(b), err
	}
	for _, path := range []string{"/before-101", "/half-101"} {
		if status, _, err := upgrade(path); status != http.StatusBadGateway {
			t.Errorf("%s: %d %v, want 502", path, status, err)
		}
	}
	if status, rest, err := upgrade("/after-101"); status != 101 || rest != "" || err != nil {
		t.Errorf("/after-101: %d %q %v, want 101 then the end of the stream", status, rest, err)
	}
	if status, rest, _ := upgrade("/reset-after-echo"); status != 101 || rest != "ping" && rest != "" {
		t.Errorf("/reset-after-echo: %d %q, want 101, the echo (unless the reset beat it) and the end", status, rest)
	}
	return []*origin{o}
}

// stall: the sandbox takes the request and never answers, or stops in
// the middle of its body. A client deadline gets a 504; a client that
// leaves gets its sandbox connection closed.
func stall(t *testing.T, e *env, h2c bool) []*origin {
	got := make(chan struct{}, 8)
	o := startOrigin(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.URL.Path == "/mid-body" {
			// More than the router's and net/http's buffers, so that
			// the client sees the start of a body of known length.
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"+strings.Repeat("half", 16<<10))
		}
		got <- struct{}{}
		untilClosed(c) // forever, unless the router closes it
	})
	client := e.client(h2c)

	req := e.request(context.Background(), "stalled", o.port, "/no-head")
	req.Header.Set(router.HeaderSandboxTimeout, "0.2")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("X-Sandbox-Timeout on a stalled sandbox: %d, want 504", resp.StatusCode)
	}
	<-got

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		resp, err := client.Do(e.request(ctx, "stalled", o.port, "/no-head"))
		if err == nil {
			resp.Body.Close()
			err = errors.New("answered")
		}
		errc <- err
	}()
	<-got
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("departed client: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	resp, err = client.Do(e.request(ctx, "stalled", o.port, "/mid-body"))
	if err != nil {
		t.Fatal(err)
	}
	<-got
	var b [4]byte
	if _, err := io.ReadFull(resp.Body, b[:]); err != nil || string(b[:]) != "half" {
		t.Fatalf("start of the body: %q %v", b, err)
	}
	cancel()
	resp.Body.Close()
	waitUntil(t, "the stalled sandbox's connections closed by the router", func() bool { return o.open.Load() == 0 })
	return []*origin{o}
}
