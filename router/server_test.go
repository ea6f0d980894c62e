package router

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// oneSandbox resolves every name to a fixed running endpoint.
type oneSandbox struct{ ip netip.Addr }

func (o oneSandbox) Lookup(k resolver.Key) resolver.Result {
	return resolver.Result{State: resolver.StateRunning, Namespace: k.Namespace, Name: k.Name, PodIP: o.ip}
}
func (oneSandbox) Synced() bool { return true }

func writeCert(t *testing.T, dir string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "sandbox-router-test"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Write both to temp names and rename: a reader never sees half a file.
	for name, block := range map[string]*pem.Block{"tls.crt": {Type: "CERTIFICATE", Bytes: der}, "tls.key": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// startServer runs srv until the test ends. The returned function stops it
// and waits for Run to return its error.
func startServer(t *testing.T, rt *Router, opts ServerOptions) (*Server, func() error) {
	t.Helper()
	srv, err := NewServer(rt, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = srv.Run(ctx); close(done) }()
	stop := func() error {
		cancel()
		<-done
		return runErr
	}
	t.Cleanup(func() { stop() })
	return srv, stop
}

func newTestRouter(t *testing.T) *Router {
	t.Helper()
	rt, err := New(Options{Resolver: oneSandbox{netip.MustParseAddr("127.0.0.1")}, AllowLoopbackPodIP: true, Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	return rt
}

func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN = %q, want h2", p)
	}
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, 1)
	srv, _ := startServer(t, newTestRouter(t), ServerOptions{
		HTTPSAddr: "127.0.0.1:0", CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
		DrainTimeout: time.Second,
	})
	if got := servedSerial(t, srv.HTTPSAddr()); got != 1 {
		t.Fatalf("serial = %d, want 1", got)
	}
	before := srv.certs.reloads.Load()
	writeCert(t, dir, 2)
	// Wait for the watcher to load a new pair, then check what is served.
	deadline := time.Now().Add(10 * time.Second)
	for servedSerial(t, srv.HTTPSAddr()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded (reloads %d -> %d)", before, srv.certs.reloads.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A broken pair keeps the current certificate.
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, srv.HTTPSAddr()); got != 2 {
		t.Fatalf("serial after broken write = %d, want 2", got)
	}
}

// TestGracefulDrain: on shutdown /readyz fails first, an in-flight request
// completes, new connections are refused, and an upgraded connection is
// closed at the end of the drain.
func TestGracefulDrain(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "raw" {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\n")
			brw.Flush()
			io.Copy(c, brw) // echo until closed
			c.Close()
			return
		}
		started <- struct{}{}
		<-release
		io.WriteString(w, "finished")
	})}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(bln)
	t.Cleanup(func() { backend.Close() })
	port := bln.Addr().(*net.TCPAddr).Port

	var logMu sync.Mutex
	var logs bytes.Buffer
	srv, stop := startServer(t, newTestRouter(t), ServerOptions{
		HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", DrainTimeout: 30 * time.Second,
		DrainDelay: 50 * time.Millisecond,
		Log:        slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil)),
	})
	base := "http://" + srv.HTTPAddr()

	// An upgraded connection that stays open.
	up, err := net.Dial("tcp", srv.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	io.WriteString(up, "GET / HTTP/1.1\r\nHost: x\r\nX-Sandbox-Id: sb1\r\nX-Sandbox-Port: "+itoa(port)+"\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\n")
	upr := bufio.NewReader(up)
	resp, err := http.ReadResponse(upr, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(up, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(upr, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}

	// A request in flight.
	type result struct {
		body string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, base+"/slow", nil)
		req.Header.Set(HeaderSandboxID, "sb1")
		req.Header.Set(HeaderSandboxPort, itoa(port))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			inflight <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- result{string(b), err}
	}()
	<-started

	if code := getStatus(t, "http://"+srv.AdminAddr()+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz before drain = %d", code)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	deadline := time.Now().Add(10 * time.Second)
	for getStatus(t, "http://"+srv.AdminAddr()+"/readyz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("readyz did not fail during drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// New connections are refused once the listener has closed.
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", srv.HTTPAddr())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting during drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The upgraded connection is still open while the request is in flight.
	io.WriteString(up, "pong")
	if _, err := io.ReadFull(upr, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("upgraded connection broke before the end of the drain: %q %v", buf, err)
	}
	close(release)
	if r := <-inflight; r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request: %q %v", r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Drain over: the upgraded connection has been closed.
	up.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := upr.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("upgraded connection not closed at the end of the drain: %v", err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "tunnels_closed=1") {
		t.Errorf("the drain did not log the tunnel it closed:\n%s", logs.String())
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		if strings.Contains(err.Error(), "refused") {
			return 0
		}
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func itoa(i int) string { return strconv.Itoa(i) }
