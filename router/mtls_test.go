package router

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/access"
)

// testCA issues client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// client issues a client certificate for user in groups.
func (ca *testCA) client(t *testing.T, user string, groups ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: user, Organization: groups},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// mtlsEnv is a router whose HTTPS listener asks for client certificates,
// with access in the tokenreview mode (no token is valid: only a
// certificate admits) in front of one backend.
type mtlsEnv struct {
	srv    *Server
	caFile string
	port   int
}

func newMTLSEnv(t *testing.T, mode ClientAuth, ca *testCA) *mtlsEnv {
	t.Helper()
	checker, err := access.New(access.Options{Modes: []access.Mode{access.ModeTokenReview}, Tokens: tokenUsers{},
		Metrics: access.NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := New(Options{Resolver: oneSandbox{netip.MustParseAddr("127.0.0.1")}, AllowLoopbackPodIP: true,
		Access: checker, Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	dir := t.TempDir()
	writeCert(t, dir, 1)
	caFile := filepath.Join(dir, "client-ca.crt")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, _ := startServer(t, rt, ServerOptions{
		HTTPSAddr: "127.0.0.1:0", CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
		ClientAuth: mode, ClientCAFile: caFile, DrainTimeout: time.Second,
	})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), false)
	return &mtlsEnv{srv: srv, caFile: caFile, port: be.port}
}

// get sends one request over a new connection presenting certs; err is a
// failed handshake.
func (e *mtlsEnv) get(t *testing.T, certs ...tls.Certificate) (status, proto int, err error) {
	t.Helper()
	conf := &tls.Config{InsecureSkipVerify: true}
	if len(certs) > 0 {
		// Sent whatever CAs the server names: Go's client would otherwise
		// keep back a certificate from a CA the server did not list.
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
	}
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://"+e.srv.HTTPSAddr()+"/", nil)
	req.Header.Set(HeaderSandboxID, "sb1")
	req.Header.Set(HeaderSandboxPort, strconv.Itoa(e.port))
	resp, err := (&http.Client{Transport: tr, Timeout: waitTimeout}).Do(req)
	if err != nil {
		return 0, 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.ProtoMajor, nil
}

func TestClientCertificatesRequired(t *testing.T) {
	ca, other := newTestCA(t, "clients"), newTestCA(t, "elsewhere")
	e := newMTLSEnv(t, ClientAuthRequired, ca)
	if _, _, err := e.get(t); err == nil {
		t.Fatal("a client without a certificate got through the handshake")
	}
	if _, _, err := e.get(t, other.client(t, "alice")); err == nil {
		t.Fatal("a certificate from another CA got through the handshake")
	}
	status, proto, err := e.get(t, ca.client(t, "alice", "dev"))
	if err != nil || status != http.StatusOK || proto != 2 {
		t.Fatalf("a valid certificate: %d over HTTP/%d, %v; want 200 over h2", status, proto, err)
	}

	// The client CA rotates without a restart: the new CA's clients get
	// in, the old one's no longer do.
	next := newTestCA(t, "clients-2")
	if err := os.WriteFile(e.caFile, next.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		if status, _, err := e.get(t, next.client(t, "bob")); err == nil && status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new client CA was not loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, err := e.get(t, ca.client(t, "alice")); err == nil {
		t.Fatal("the old CA's certificate still passes after the rotation")
	}
	// A broken CA file keeps the current CA.
	if err := os.WriteFile(e.caFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if status, _, err := e.get(t, next.client(t, "bob")); err != nil || status != http.StatusOK {
		t.Fatalf("after a broken CA file: %d %v", status, err)
	}
}

func TestClientCertificatesOptional(t *testing.T) {
	ca := newTestCA(t, "clients")
	e := newMTLSEnv(t, ClientAuthOptional, ca)
	if status, _, err := e.get(t); err != nil || status != http.StatusUnauthorized {
		t.Fatalf("without a certificate: %d %v, want 401 from access", status, err)
	}
	if status, _, err := e.get(t, ca.client(t, "alice")); err != nil || status != http.StatusOK {
		t.Fatalf("with a certificate: %d %v", status, err)
	}
	if _, _, err := e.get(t, newTestCA(t, "elsewhere").client(t, "alice")); err == nil {
		t.Fatal("an unverifiable certificate got through the handshake")
	}
}
