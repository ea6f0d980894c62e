package cluster

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
)

// writeServiceAccountKeys writes a fresh RSA key pair as PEM: the private
// key (PKCS#1) to keyPath for --service-account-signing-key-file and the
// public key (PKIX) to pubPath for --service-account-key-file.
func writeServiceAccountKeys(keyPath, pubPath string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("marshal service-account public key: %w", err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(keyPath, priv, 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

// newToken returns a random bearer token.
func newToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// writeTokens writes the static token file: an admin in system:masters and
// the unprivileged user "router", which has no RBAC grants until a test
// gives it some.
func writeTokens(path, adminToken, routerToken string) error {
	data := fmt.Sprintf("%s,admin,admin,system:masters\n%s,router,router\n", adminToken, routerToken)
	return os.WriteFile(path, []byte(data), 0o600)
}

// writeKubeconfig writes a kubeconfig for server, trusting caFile, that
// authenticates as user with token.
func writeKubeconfig(path, server, caFile, user, token string) error {
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %q
    certificate-authority: %q
users:
- name: %q
  user:
    token: %q
contexts:
- name: e2e
  context:
    cluster: e2e
    user: %q
current-context: e2e
`, server, caFile, user, token, user)
	return os.WriteFile(path, []byte(data), 0o600)
}
