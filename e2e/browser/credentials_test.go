package browser

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/access/scoped"
)

// scopedSigner is the key pair of v2 scoped tokens: the router reads the
// public half from keyDir.
type scopedSigner struct {
	keyDir string
	key    ed25519.PrivateKey
}

const scopedKeyID = "k1"

func newScopedSigner(t *testing.T) scopedSigner {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, scopedKeyID+".pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return scopedSigner{keyDir: dir, key: priv}
}

// mint signs a v2 token for one sandbox instance, any method, valid for
// ttl.
func (s scopedSigner) mint(t *testing.T, name, uid string, ttl time.Duration) string {
	t.Helper()
	now := time.Now()
	tok, err := scoped.MintV2(s.key, scoped.Claims{KeyID: scopedKeyID, Namespace: namespace, Name: name, UID: uid, Expires: now.Add(ttl)}, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// serverCert writes a self-signed certificate for every sandbox host of
// namespace (*.<namespace>.<base domain>) and for 127.0.0.1 (the page of
// another site in the cross-site test) and returns the file paths and the
// base64 SHA-256 of its public key, by which Chromium is told to trust it
// (--ignore-certificate-errors-spki-list): no other certificate error is
// ignored, and no CA is installed anywhere.
func serverCert(t *testing.T) (certFile, keyFile, spki string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sandbox-router e2e"},
		DNSNames:     []string{"*." + namespace + "." + baseDomain},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return certFile, keyFile, base64.StdEncoding.EncodeToString(sum[:])
}
