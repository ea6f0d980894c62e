package router

// Shared helpers for the end-to-end tests (proxy_test.go, protocols_test.go,
// grpc_test.go, websocket_test.go). Everything runs on real sockets bound to
// 127.0.0.1: a Router served by NewServer on an HTTP and an HTTPS listener,
// and sandbox backends that are httptest servers, gRPC servers or raw TCP
// listeners.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// testBaseDomain is the base domain of host-based routing in these tests.
const testBaseDomain = "test.local"

// waitTimeout bounds every wait on a channel or condition. It is a
// deadline against hangs, not an expectation of how long things take.
const waitTimeout = 10 * time.Second

var loopback = netip.MustParseAddr("127.0.0.1")

// sandboxResolver is an in-memory router.Resolver: sandboxes by
// namespace/name, a Synced switch, and a log of the keys looked up.
type sandboxResolver struct {
	mu        sync.Mutex
	sandboxes map[resolver.Key]resolver.Result
	lookups   []resolver.Key
	notSynced atomic.Bool
}

func newSandboxResolver() *sandboxResolver {
	return &sandboxResolver{sandboxes: make(map[resolver.Key]resolver.Result)}
}

// set registers a sandbox in the given state (running ones at 127.0.0.1).
func (s *sandboxResolver) set(ns, name string, state resolver.State, proto resolver.Protocol) {
	res := resolver.Result{State: state, Namespace: ns, Name: name, Protocol: proto}
	if state == resolver.StateRunning {
		res.PodIP = loopback
	}
	s.mu.Lock()
	s.sandboxes[resolver.Key{Namespace: ns, Name: name}] = res
	s.mu.Unlock()
}

func (s *sandboxResolver) Lookup(k resolver.Key) resolver.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups = append(s.lookups, k)
	return s.sandboxes[resolver.Key{Namespace: k.Namespace, Name: k.Name}]
}

func (s *sandboxResolver) Synced() bool { return !s.notSynced.Load() }

// lastLookup returns the most recent key the router asked for.
func (s *sandboxResolver) lastLookup() (resolver.Key, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lookups) == 0 {
		return resolver.Key{}, false
	}
	return s.lookups[len(s.lookups)-1], true
}

// proxyEnv is a running router: an HTTP listener (HTTP/1.1 + h2c) and an
// HTTPS listener (HTTP/1.1 + h2) served by NewServer, like production.
type proxyEnv struct {
	t        *testing.T
	rt       *Router
	reg      *prometheus.Registry
	res      *sandboxResolver
	srv      *Server
	httpAddr string
	tlsAddr  string
	roots    *x509.CertPool
}

// newProxyEnv starts a router whose resolver knows sandbox default/sb1
// (running, protocol auto). mod may adjust the options before New.
func newProxyEnv(t *testing.T, mod func(*Options)) *proxyEnv {
	t.Helper()
	return newProxyEnvServer(t, mod, nil)
}

// newProxyEnvServer is newProxyEnv with smod adjusting the server's
// options too.
func newProxyEnvServer(t *testing.T, mod func(*Options), smod func(*ServerOptions)) *proxyEnv {
	t.Helper()
	res := newSandboxResolver()
	res.set("default", "sb1", resolver.StateRunning, resolver.ProtocolAuto)
	reg := prometheus.NewRegistry()
	opts := Options{
		Resolver:           res,
		Metrics:            NewMetrics(reg),
		AllowLoopbackPodIP: true,
		BaseDomains:        []string{testBaseDomain},
	}
	if mod != nil {
		mod(&opts)
	}
	rt, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, roots := writeTestCert(t)
	sopts := ServerOptions{
		HTTPAddr:          "127.0.0.1:0",
		HTTPSAddr:         "127.0.0.1:0",
		CertFile:          certFile,
		KeyFile:           keyFile,
		ReadHeaderTimeout: 10 * time.Second,
		DrainTimeout:      5 * time.Second,
	}
	if smod != nil {
		smod(&sopts)
	}
	srv, err := NewServer(rt, sopts)
	if err != nil {
		rt.Close()
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
	return &proxyEnv{t: t, rt: rt, reg: reg, res: res, srv: srv, httpAddr: srv.HTTPAddr(), tlsAddr: srv.HTTPSAddr(), roots: roots}
}

// Client protocols towards the router.
const (
	viaH1  = "h1"  // HTTP/1.1, cleartext
	viaH2C = "h2c" // HTTP/2 with prior knowledge, cleartext
	viaH2  = "h2"  // HTTP/2 over TLS (ALPN)
)

// client returns an HTTP client speaking proto to the router. Whatever
// host a URL names, it connects to the router's listener, so URLs can
// carry public sandbox host names.
func (e *proxyEnv) client(proto string) *http.Client {
	e.t.Helper()
	var p http.Protocols
	addr := e.httpAddr
	tr := &http.Transport{DisableCompression: true}
	switch proto {
	case viaH1:
		p.SetHTTP1(true)
	case viaH2C:
		p.SetUnencryptedHTTP2(true)
	case viaH2:
		p.SetHTTP2(true)
		addr = e.tlsAddr
		tr.TLSClientConfig = &tls.Config{RootCAs: e.roots, ServerName: "localhost"}
	default:
		e.t.Fatalf("unknown client protocol %q", proto)
	}
	tr.Protocols = &p
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// url builds a URL for proto; host "" means the router's own address.
func (e *proxyEnv) url(proto, host, path string) string {
	scheme := "http://"
	if proto == viaH2 {
		scheme = "https://"
	}
	if host == "" {
		host = e.httpAddr
	}
	return scheme + host + path
}

// sandboxRequest builds a request for default/sb1 on port, routed by the
// X-Sandbox-* headers.
func (e *proxyEnv) sandboxRequest(ctx context.Context, proto, method, path string, port int, body io.Reader) *http.Request {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.url(proto, "", path), body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set(HeaderSandboxID, "sb1")
	req.Header.Set(HeaderSandboxPort, strconv.Itoa(port))
	return req
}

// metric sums the samples of a counter or gauge family whose labels
// include all of labels.
func (e *proxyEnv) metric(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// idlePoolConns reports how many upstream connections the router's
// HTTP/1.1 pool holds for addr, and how many of them the sandbox has
// already closed (judged by a fresh liveness probe, so the pool's own
// probe state is not touched).
func (e *proxyEnv) idlePoolConns(addr netip.AddrPort) (idle, closedByPeer int) {
	p := e.rt.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	ep := p.endpoints[addr]
	if ep == nil {
		return 0, 0
	}
	for _, c := range ep.idle {
		idle++
		probe := newLivenessProbe(c.nc)
		if !probe.check() {
			closedByPeer++
		}
	}
	return idle, closedByPeer
}

// waitUntil polls cond every few milliseconds until it holds, failing the
// test after waitTimeout. For state that has no event to wait on (metrics,
// kernel socket state).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// recv waits for a value on ch, failing the test after waitTimeout.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// backend is a sandbox server on 127.0.0.1 that counts its connections.
type backend struct {
	*httptest.Server
	port     int
	newConns atomic.Int64
}

// startBackend serves h over HTTP/1.1, or over h2c only (prior knowledge,
// no HTTP/1.1) when h2c is set. configure may adjust the server.
func startBackend(t *testing.T, h http.Handler, h2c bool, configure ...func(*http.Server)) *backend {
	t.Helper()
	b := &backend{}
	s := httptest.NewUnstartedServer(h)
	var p http.Protocols
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	s.Config.Protocols = &p
	s.Config.ConnState = func(_ net.Conn, cs http.ConnState) {
		if cs == http.StateNew {
			b.newConns.Add(1)
		}
	}
	for _, f := range configure {
		f(s.Config)
	}
	s.Start()
	t.Cleanup(s.Close)
	b.Server = s
	b.port = s.Listener.Addr().(*net.TCPAddr).Port
	return b
}

// addrPort is the backend's address as the router's pool keys it.
func (b *backend) addrPort() netip.AddrPort {
	return netip.AddrPortFrom(loopback, uint16(b.port))
}

// seenRequest is what a backend received.
type seenRequest struct {
	Method     string
	RequestURI string
	Host       string
	Proto      string
	Header     http.Header
	Body       string
}

// startRecorder starts a backend that reports every request it receives
// on the returned channel and answers 200 "ok" with X-Backend: recorder.
func startRecorder(t *testing.T, h2c bool) (*backend, <-chan seenRequest) {
	t.Helper()
	ch := make(chan seenRequest, 64)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ch <- seenRequest{r.Method, r.RequestURI, r.Host, r.Proto, r.Header.Clone(), string(body)}
		w.Header().Set("X-Backend", "recorder")
		io.WriteString(w, "ok")
	}), h2c)
	return b, ch
}

// freePort returns a port on 127.0.0.1 that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// apiError is the router's JSON error body.
type apiError struct {
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// readAPIError decodes a JSON error response and closes its body.
func readAPIError(t *testing.T, resp *http.Response) (apiError, string) {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading error body: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json (body %q)", ct, raw)
	}
	var ae apiError
	if err := json.Unmarshal(raw, &ae); err != nil {
		t.Fatalf("error body %q: %v", raw, err)
	}
	if ae.Detail == "" || ae.Code == "" {
		t.Fatalf("error body %q lacks detail or code", raw)
	}
	return ae, string(raw)
}

// rawExchange writes a hand-made HTTP/1.1 request on a new connection to
// addr and reads one response, for requests a Go client would not send.
func rawExchange(t *testing.T, addr, request string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	// Skip interim answers (100 Continue for Expect).
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	return resp, string(body)
}

// patternReader yields n deterministic pseudo-random bytes without
// holding them: big bodies are generated and hashed as they stream.
type patternReader struct {
	rng       *mrand.ChaCha8
	remaining int64
}

func newPatternReader(seed byte, n int64) *patternReader {
	var s [32]byte
	s[0] = seed
	return &patternReader{rng: mrand.NewChaCha8(s), remaining: n}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.remaining {
		b = b[:p.remaining]
	}
	n, _ := p.rng.Read(b)
	p.remaining -= int64(n)
	return n, nil
}

// patternSHA256 is the hex SHA-256 of newPatternReader(seed, n).
func patternSHA256(seed byte, n int64) string {
	h := sha256.New()
	io.Copy(h, newPatternReader(seed, n))
	return hex.EncodeToString(h.Sum(nil))
}

// hashStream hashes r to its end, returning the hex digest and length.
func hashStream(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// writeTestCert writes a self-signed certificate for localhost, 127.0.0.1
// and the sandbox hosts of namespace default, and returns its files and a pool that trusts it.
func writeTestCert(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sandbox-router-e2e"},
		// Public sandbox hosts too, for clients (gRPC) that verify the
		// authority they route by.
		DNSNames:              []string{"localhost", testBaseDomain, "*.default." + testBaseDomain},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

// mustNotContainAddr fails when an error body leaks an internal address.
func mustNotContainAddr(t *testing.T, body string, port int) {
	t.Helper()
	for _, s := range []string{"127.0.0.1", ":" + strconv.Itoa(port), "dial tcp", "connection refused"} {
		if strings.Contains(body, s) {
			t.Errorf("error body %q leaks internal detail %q", body, s)
		}
	}
}

// response is a completed exchange as a client saw it.
type response struct {
	status  int
	proto   string
	header  http.Header
	trailer http.Header
	body    string
	err     error
}

// doRequest sends req and reads the whole response; safe to call from
// any goroutine (it reports errors instead of failing the test).
func doRequest(client *http.Client, req *http.Request) response {
	resp, err := client.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Proto, resp.Header, resp.Trailer, string(b), err}
}
