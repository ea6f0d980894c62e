package router

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestClientConnectionCap: past the cap a cleartext connection is answered
// 503 connection_limit before its request is read, and a TLS one closed,
// while the tunnels that hold the cap go on; once one closes, a new
// connection is served again.
func TestClientConnectionCap(t *testing.T) {
	env := newProxyEnvServer(t, nil, func(o *ServerOptions) { o.MaxClientConns = 3 })
	sb := startRawSandbox(t)
	var ends []net.Conn
	var readers []*bufio.Reader
	for range 3 {
		c, br, resp := openRawTunnel(t, env.httpAddr, sb.port)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", resp.StatusCode)
		}
		ends, readers = append(ends, c), append(readers, br)
	}
	waitUntil(t, "3 client connections counted", func() bool {
		return env.metric("sandbox_router_open_connections", map[string]string{"side": "client"}) == 3
	})

	_, _, resp := openRawTunnel(t, env.httpAddr, sb.port)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("past the cap: status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if ae, _ := readAPIError(t, resp); ae.Code != CodeConnectionLimit {
		t.Fatalf("code %q, want %q", ae.Code, CodeConnectionLimit)
	}
	// TLS: a closed accept, not a hang.
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", env.tlsAddr, &tls.Config{RootCAs: env.roots, ServerName: "localhost"})
	if err == nil {
		_ = tc.SetDeadline(time.Now().Add(waitTimeout))
		_, err = tc.Read(make([]byte, 1))
		tc.Close()
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a TLS connection past the cap: %v; want it closed", err)
	}
	if got := env.metric("sandbox_router_connections_refused_total", map[string]string{"reason": "client_limit"}); got != 2 {
		t.Errorf("refused{client_limit} = %v, want 2", got)
	}
	for i := range ends {
		echoOnce(t, ends[i], readers[i], "still here")
	}

	ends[0].Close()
	waitUntil(t, "a place to free up", func() bool {
		return env.metric("sandbox_router_open_connections", map[string]string{"side": "client"}) == 2
	})
	c, br, resp := openRawTunnel(t, env.httpAddr, sb.port)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("after a close: status %d, want 101", resp.StatusCode)
	}
	echoOnce(t, c, br, "welcome back")
}

// TestTunnelCap: past the tunnel cap an upgrade is refused before the
// sandbox hears of it, while plain requests and open tunnels go on.
func TestTunnelCap(t *testing.T) {
	env := newProxyEnv(t, func(o *Options) { o.MaxTunnels = 2 })
	sb := startRawSandbox(t)
	a, abr, _ := openRawTunnel(t, env.httpAddr, sb.port)
	openRawTunnel(t, env.httpAddr, sb.port)
	// The 101 reaches the client just before the tunnel counts itself
	// open: wait for both, or the count below could read 1 too early.
	waitUntil(t, "two tunnels open", func() bool { return env.upgradedOpen() == 2 })

	_, _, resp := openRawTunnel(t, env.httpAddr, sb.port)
	if ae, _ := readAPIError(t, resp); resp.StatusCode != http.StatusServiceUnavailable || ae.Code != CodeTunnelLimit {
		t.Fatalf("third tunnel: %d %q, want 503 %q", resp.StatusCode, ae.Code, CodeTunnelLimit)
	}
	if got := sb.upgrades.Load(); got != 2 {
		t.Errorf("the sandbox saw %d upgrades, want 2", got)
	}
	r := doRequest(env.client(viaH1), env.sandboxRequest(context.Background(), viaH1, "GET", "/plain", sb.port, nil))
	if r.status != http.StatusOK {
		t.Fatalf("a plain request at the tunnel cap: %d, want 200", r.status)
	}
	echoOnce(t, a, abr, "open tunnels go on")
	if got := env.metric("sandbox_router_connections_refused_total", map[string]string{"reason": "tunnel_limit"}); got != 1 {
		t.Errorf("refused{tunnel_limit} = %v, want 1", got)
	}

	a.Close()
	waitUntil(t, "a tunnel to close", func() bool { return env.upgradedOpen() == 1 })
	if _, _, resp := openRawTunnel(t, env.httpAddr, sb.port); resp.StatusCode != http.StatusSwitchingProtocols {
		ae, _ := readAPIError(t, resp)
		t.Fatalf("after a close: %d %q, want 101", resp.StatusCode, ae.Code)
	}
}

// TestUpstreamConnectionCap: at the cap an idle pooled connection makes
// room for a new one; with none idle, the request is answered 503
// upstream_connection_limit at once.
func TestUpstreamConnectionCap(t *testing.T) {
	env := newProxyEnv(t, func(o *Options) { o.MaxUpstreamConns = 2 })
	sb := startRawSandbox(t)
	other := startRawSandbox(t)
	client := env.client(viaH1)
	get := func(port int) response {
		return doRequest(client, env.sandboxRequest(context.Background(), viaH1, "GET", "/plain", port, nil))
	}
	openRawTunnel(t, env.httpAddr, sb.port)              // 1: a tunnel
	if r := get(other.port); r.status != http.StatusOK { // 2: pooled, idle after
		t.Fatalf("second connection: %d", r.status)
	}
	// 3 would pass the cap: the idle one is closed to make room.
	if _, _, resp := openRawTunnel(t, env.httpAddr, other.port); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("a tunnel at the cap with an idle connection: %d, want 101", resp.StatusCode)
	}
	waitUntil(t, "two upstream connections (the tunnels)", func() bool {
		return env.metric("sandbox_router_open_connections", map[string]string{"side": "upstream"}) == 2
	})
	r := get(other.port)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, CodeUpstreamLimit) {
		t.Fatalf("at the cap with nothing idle: %d %q, want 503 %s", r.status, r.body, CodeUpstreamLimit)
	}
	if got := env.metric("sandbox_router_connections_refused_total", map[string]string{"reason": "upstream_limit"}); got != 1 {
		t.Errorf("refused{upstream_limit} = %v, want 1", got)
	}
}

// TestUpstreamCapEvictsIdle: an idle keep-alive connection to one sandbox
// gives its place to a request for another.
func TestUpstreamCapEvictsIdle(t *testing.T) {
	env := newProxyEnv(t, func(o *Options) { o.MaxUpstreamConns = 1 })
	ok := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }
	a := startBackend(t, http.HandlerFunc(ok), false)
	b := startBackend(t, http.HandlerFunc(ok), false)
	client := env.client(viaH1)
	for _, port := range []int{a.port, b.port, a.port} {
		r := doRequest(client, env.sandboxRequest(context.Background(), viaH1, "GET", "/", port, nil))
		if r.status != http.StatusOK {
			t.Fatalf("port %d: %d %q", port, r.status, r.body)
		}
	}
	if got := env.metric("sandbox_router_connections_refused_total", map[string]string{"reason": "upstream_limit"}); got != 0 {
		t.Errorf("refused{upstream_limit} = %v, want 0", got)
	}
}

// exhaustedListener is a real listener whose first Accepts fail as they
// do when the process is out of descriptors (whether or not a connection
// waits); the spare's own accept goes to the real socket.
type exhaustedListener struct {
	*net.TCPListener
	failures atomic.Int32
}

func (l *exhaustedListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.TCPListener.Accept()
}

// TestAcceptDescriptorExhaustion: an accept that fails for want of
// descriptors is counted and warned about (once, however often it
// repeats), and each waiting connection is accepted with the spare
// descriptor and closed at once instead of left to time out. With none
// waiting, the error goes back to the server, which retries later.
func TestAcceptDescriptorExhaustion(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	inner := &exhaustedListener{TCPListener: tl.(*net.TCPListener)}
	ln := &limitedListener{Listener: inner, open: &slots{}, refuse: refuseClose, spare: newSpareDescriptor(),
		metrics: m, log: log, warnings: newBudgetWarnings(time.Hour)}
	defer ln.spare.close()

	// Nothing waiting: nothing to shed; the error is the server's.
	inner.failures.Store(1)
	if _, err := ln.Accept(); !isDescriptorExhaustion(err) {
		t.Fatalf("Accept = %v, want the EMFILE", err)
	}

	var waiting []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", tl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		waiting = append(waiting, c)
	}
	inner.failures.Store(3) // two sheds, then nothing waits: the error again
	if _, err := ln.Accept(); !isDescriptorExhaustion(err) {
		t.Fatalf("Accept = %v, want the EMFILE once no one waits", err)
	}
	for i, c := range waiting {
		_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("waiting connection %d: read %v, want it closed", i, err)
		}
	}
	kept, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept after the exhaustion passed: %v", err)
	}
	c.Close()

	env := &proxyEnv{t: t, reg: reg}
	if got := env.metric("sandbox_router_descriptor_exhaustion_total", map[string]string{"op": "accept"}); got != 4 {
		t.Errorf("descriptor_exhaustion_total{accept} = %v, want 4", got)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if n := strings.Count(out, "out of file descriptors"); n != 1 {
		t.Errorf("%d warnings logged, want 1 (rate-limited):\n%s", n, out)
	}
	if !strings.Contains(out, "level=WARN") {
		t.Errorf("the warning is not at warning level:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// FuzzSkipRequestHead: a refused connection's request head is read up to
// its blank line and no further, whatever the bytes, and never past
// maxRefusedHead.
func FuzzSkipRequestHead(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), 7)
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 1)
	f.Add([]byte("\r\n\r"), 3)
	f.Fuzz(func(t *testing.T, in []byte, chunk int) {
		chunk = 1 + abs(chunk)%64
		client, server := net.Pipe()
		go func() {
			for b := in; len(b) > 0; {
				n := min(chunk, len(b))
				if _, err := client.Write(b[:n]); err != nil {
					break
				}
				b = b[n:]
			}
			client.Close()
		}()
		got := skipRequestHead(server)
		server.Close()
		// A blank line anywhere is found (one past the bound is found or
		// the bound reached); without one, only a head as long as the
		// bound is answered.
		want := bytes.Contains(in, []byte("\r\n\r\n")) || len(in) >= maxRefusedHead
		if got != want {
			t.Fatalf("skipRequestHead = %v, want %v (%d bytes)", got, want, len(in))
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
