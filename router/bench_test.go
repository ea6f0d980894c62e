package router

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/activator"
	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/sandboxhost"
)

// startBenchOrigin is a minimal HTTP/1.1 backend on 127.0.0.1: it reads each
// request head (GET, no body) and answers a canned response, allocating
// nothing per request, so that allocations counted by a benchmark in this
// process are the router's. It returns the port.
func startBenchOrigin(b *testing.B, bodySize int) uint16 {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
		strconv.Itoa(bodySize) + "\r\n\r\n" + strings.Repeat("x", bodySize))
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReaderSize(c, 4096)
				for {
					// Read header lines up to the empty one.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// benchWriter is a reusable, discarding http.ResponseWriter.
type benchWriter struct {
	h      http.Header
	status int
	n      int64
}

func (w *benchWriter) Header() http.Header  { return w.h }
func (w *benchWriter) WriteHeader(code int) { w.status = code }
func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += int64(len(p))
	return len(p), nil
}
func (w *benchWriter) Flush() {}

func newBenchRouter(b *testing.B, accessLog io.Writer, activity ActivityTracker) *Router {
	b.Helper()
	rt, err := New(Options{
		Resolver:           oneSandbox{netip.MustParseAddr("127.0.0.1")},
		AllowLoopbackPodIP: true,
		Metrics:            NewMetrics(prometheus.NewRegistry()),
		AccessLog:          accessLog,
		Activity:           activity,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rt.Close)
	return rt
}

func newBenchRequest(port uint16, path string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Host = "router.internal"
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("X-Sandbox-ID", "bench")
	r.Header.Set("X-Sandbox-Port", strconv.Itoa(int(port)))
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Accept", "*/*")
	return r
}

// benchHandler drives Router.ServeHTTP directly, one request at a time,
// through a pooled keep-alive connection to a real loopback backend.
func benchHandler(b *testing.B, bodySize int, accessLog io.Writer, activity ActivityTracker, tune ...func(*Router)) {
	port := startBenchOrigin(b, bodySize)
	rt := newBenchRouter(b, accessLog, activity)
	for _, f := range tune {
		f(rt)
	}
	r := newBenchRequest(port, "/bench")
	w := &benchWriter{h: make(http.Header)}
	b.SetBytes(int64(bodySize))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		w.status, w.n = 0, 0
		rt.ServeHTTP(w, r)
		if w.status != http.StatusOK || w.n != int64(bodySize) {
			b.Fatalf("status %d, %d bytes; want 200, %d", w.status, w.n, bodySize)
		}
	}
}

// BenchmarkProxyHTTP1 measures an HTTP/1.1 request through the router to a
// loopback backend. The handler cases call ServeHTTP directly, so
// allocs/op is the router's own (the backend allocates nothing per
// request); the server case adds net/http's server and client on both
// sides, as in production, with parallel clients.
func BenchmarkProxyHTTP1(b *testing.B) {
	b.Run("handler/64B", func(b *testing.B) { benchHandler(b, 64, nil, nil) })
	b.Run("handler/64KiB", func(b *testing.B) { benchHandler(b, 64<<10, nil, nil) })
	b.Run("handler/64B+accesslog", func(b *testing.B) {
		benchHandler(b, 64, io.Discard, nil)
	})
	b.Run("handler/64B+activity", func(b *testing.B) {
		benchHandler(b, 64, nil, benchTracker{activator.NewTracker()})
	})
	// With the MCP endpoint on, every request's Host is compared with
	// its host first.
	b.Run("handler/64B+mcp", func(b *testing.B) {
		benchHandler(b, 64, nil, nil, func(rt *Router) {
			rt.opts.MCP, rt.opts.MCPHosts = http.NotFoundHandler(), []string{"mcp.sandbox.example.com"}
		})
	})
	b.Run("server/64B", func(b *testing.B) {
		port := startBenchOrigin(b, 64)
		rt := newBenchRouter(b, nil, nil)
		srv := httptest.NewServer(rt)
		b.Cleanup(srv.Close)
		tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
		b.Cleanup(tr.CloseIdleConnections)
		client := &http.Client{Transport: tr}
		portStr := strconv.Itoa(int(port))
		b.SetBytes(64)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var buf bytes.Buffer
			for pb.Next() {
				req, err := http.NewRequest(http.MethodGet, srv.URL+"/bench", nil)
				if err != nil {
					b.Error(err)
					return
				}
				req.Header["X-Sandbox-Id"] = []string{"bench"}
				req.Header["X-Sandbox-Port"] = []string{portStr}
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				buf.Reset()
				_, err = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || buf.Len() != 64 {
					b.Errorf("status %d, %d bytes, err %v", resp.StatusCode, buf.Len(), err)
					return
				}
			}
		})
	})
}

// BenchmarkRoutingKey measures keyParser.parse for the usual shapes of a
// request.
func BenchmarkRoutingKey(b *testing.B) {
	p := &keyParser{baseDomains: sandboxhost.NewDomains([]string{"sandbox.example.com"})}
	cases := []struct {
		name    string
		host    string
		headers map[string]string
	}{
		{"headers", "router.internal", map[string]string{
			HeaderSandboxID: "bench", HeaderSandboxNamespace: "team-a", HeaderSandboxPort: "3000"}},
		{"headers+uid+podip", "router.internal", map[string]string{
			HeaderSandboxID: "bench", HeaderSandboxNamespace: "team-a", HeaderSandboxPort: "3000",
			HeaderSandboxUID: "0b3c2e6a-1111-4222-8333-444455556666", HeaderSandboxPodIP: "10.1.2.3"}},
		{"host", "3000-bench.team-a.sandbox.example.com", nil},
		{"host-with-port", "bench.team-a.sandbox.example.com:8443", map[string]string{HeaderSandboxPort: "3000"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Host = c.host
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			if _, err := p.parse(r); err != nil {
				b.Fatalf("parse: %v", err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.parse(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchTracker is the activator's tracker as cmd wires it.
type benchTracker struct{ t *activator.Tracker }

func (b benchTracker) Begin(k resolver.Key) Activity { return b.t.Begin(k) }

// BenchmarkTunnelBulk pushes bytes through one tunnel (an Upgrade), client
// to sandbox, in 64 KiB writes, through net/http's server as in
// production. It is how the tunnel's pooled-buffer copy compares with the
// splice(2) it replaced (docs/benchmarks.md).
func BenchmarkTunnelBulk(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: bulk\r\n\r\n")
				n, _ := io.Copy(io.Discard, br)
				io.WriteString(c, strconv.FormatInt(n, 10))
			}()
		}
	}()
	rt := newBenchRouter(b, nil, nil)
	srv := httptest.NewServer(rt)
	b.Cleanup(srv.Close)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: router\r\nConnection: Upgrade\r\nUpgrade: bulk\r\nX-Sandbox-ID: bench\r\nX-Sandbox-Port: "+
		strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		b.Fatalf("upgrade: %v %v", resp, err)
	}
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	sent := int64(0)
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
		sent += int64(len(chunk))
	}
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(br)
	if string(got) != strconv.FormatInt(sent, 10) {
		b.Fatalf("the sandbox got %s bytes, want %d", got, sent)
	}
}
