package access

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
)

// TestClientCertificateAccess: with --mtls-mode=optional and the
// kubernetes mode, a client certificate's CN and O are a user and groups
// that RBAC grants per sandbox like any Kubernetes x509 user, beside
// ServiceAccount tokens on the same listener.
func TestClientCertificateAccess(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	ca := newCA(t)
	caFile := filepath.Join(dir, "clients-ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writeServingCert(t, dir)

	e.grant(t, teamA, "cert-carol", []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "carol"}}, "sb1")
	e.grant(t, teamA, "cert-qa", []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "qa"}}, "sb2")
	token := e.serviceAccount(t, agents, "mtls-agent")
	e.grant(t, teamA, "mtls-agent", []rbacv1.Subject{sa(agents, "mtls-agent")}, "sb3")

	p := e.startRouter(t, "--authz-mode", "kubernetes", "--listen-https", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile,
		"--mtls-mode", "optional", "--tls-client-ca-file", caFile)
	carol, dave := ca.client(t, "carol"), ca.client(t, "dave", "qa")
	for _, tc := range []struct {
		who    string
		cert   *tls.Certificate
		token  string
		sb     string
		status int
	}{
		{"carol, granted by name", &carol, "", "sb1", http.StatusOK},
		{"carol, not granted", &carol, "", "sb2", http.StatusForbidden},
		{"dave, granted by group", &dave, "", "sb2", http.StatusOK},
		{"dave, not granted", &dave, "", "sb1", http.StatusForbidden},
		{"no certificate, no token", nil, "", "sb1", http.StatusUnauthorized},
		{"a ServiceAccount token beside", nil, token, "sb3", http.StatusOK},
		{"the token wins over carol's certificate", &carol, token, "sb1", http.StatusForbidden},
	} {
		if got := getTLS(t, p, tc.cert, tc.token, teamA, tc.sb); got.Err != nil || got.Status != tc.status {
			t.Errorf("%s: %v, want %d", tc.who, got, tc.status)
		} else if tc.status == http.StatusOK && !got.served(teamA, tc.sb) {
			t.Errorf("%s: %v, not served by %s", tc.who, got, tc.sb)
		}
	}
}

// getTLS sends a GET for ns/name over the router's HTTPS listener on a new
// connection, presenting cert when given.
func getTLS(t *testing.T, p *routerproc.Proc, cert *tls.Certificate, token, ns, name string) reply {
	t.Helper()
	conf := &tls.Config{InsecureSkipVerify: true} // the serving certificate is not under test
	if cert != nil {
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+p.HTTPSAddr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Sandbox-ID", name)
	req.Header.Set("X-Sandbox-Namespace", ns)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: waitTimeout}).Do(req)
	if err != nil {
		return reply{Err: err}
	}
	defer resp.Body.Close()
	r := reply{Status: resp.StatusCode}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{Err: err}
	}
	_ = json.Unmarshal(body, &r)
	return r
}

// ca issues client certificates.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *ca {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "router clients"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (c *ca) client(t *testing.T, user string, groups ...string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: user, Organization: groups},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// writeServingCert writes a self-signed certificate for 127.0.0.1.
func writeServingCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sandbox-router"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
