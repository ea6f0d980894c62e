package access

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/access/scoped"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// uids is a resolver that knows sandboxes' UIDs.
type uids map[resolver.Key]string

func (u uids) Lookup(k resolver.Key) resolver.Result {
	uid, ok := u[resolver.Key{Namespace: k.Namespace, Name: k.Name}]
	if !ok {
		return resolver.Result{}
	}
	return resolver.Result{State: resolver.StateRunning, Namespace: k.Namespace, Name: k.Name, UID: uid}
}

func TestParseModes(t *testing.T) {
	for _, ok := range []string{"allow-all", "kubernetes", "scoped-token", "kubernetes,scoped-token", "tokenreview, scoped-token"} {
		if _, err := ParseModes(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "open", "allow-all,kubernetes", "kubernetes,kubernetes", "tokenreview,kubernetes"} {
		if _, err := ParseModes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestScopedTokensBesideKubernetes: with kubernetes and scoped-token
// together, a scoped token is verified here (a v2 one against the
// sandbox's current UID) and any other bearer token by the API server.
func TestScopedTokensBesideKubernetes(t *testing.T) {
	priv, v := newTestVerifier(t)
	f := newAuthority()
	sandboxes := uids{sbA: "uid-a", sbB: "uid-b"}
	c, err := New(Options{Modes: []Mode{ModeKubernetes, ModeScopedToken}, Tokens: f, Access: f, Scoped: v, Sandboxes: sandboxes,
		Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(cl scoped.Claims) string {
		cl.KeyID, cl.Expires = "k1", time.Now().Add(time.Hour)
		tok, err := scoped.MintV2(priv, cl, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	forA := mint(scoped.Claims{Namespace: sbA.Namespace, Name: sbA.Name, UID: "uid-a", Methods: []string{"GET"}})
	oldA := mint(scoped.Claims{Namespace: sbA.Namespace, Name: sbA.Name, UID: "uid-before"})
	check := func(tok, method string, sb resolver.Key) string {
		r, _ := http.NewRequest(method, "http://router/x", nil)
		r.RemoteAddr = "192.0.2.7:5000"
		r.Header.Set("Authorization", "Bearer "+tok)
		return code(check(c, context.Background(), r, sb, 8888))
	}
	cases := []struct {
		tok, method string
		sb          resolver.Key
		want        string
	}{
		{forA, "GET", sbA, "allowed"},
		{forA, "POST", sbA, CodeForbidden}, // the token's methods
		{forA, "GET", sbB, CodeForbidden},  // another sandbox
		{oldA, "GET", sbA, CodeForbidden},  // a sandbox of that name before this one
		{forA + "x", "GET", sbA, CodeInvalidCredentials},
		{"v1.abc.def", "GET", sbA, CodeInvalidCredentials}, // v1 is not configured
		{"alice-token", "GET", sbA, "allowed"},             // TokenReview and RBAC as before
		{"alice-token", "GET", sbB, CodeForbidden},
	}
	for _, tc := range cases {
		if got := check(tc.tok, tc.method, tc.sb); got != tc.want {
			t.Errorf("%.20s... %s %v: %s, want %s", tc.tok, tc.method, tc.sb, got, tc.want)
		}
	}
	if f.tokenN.Load() != 1 {
		t.Errorf("%d TokenReviews, want 1: scoped tokens never go to the API server", f.tokenN.Load())
	}
}

// newTestVerifier makes an Ed25519 key "k1" and a verifier that holds its
// public half, as a key directory of the router fleet would.
func newTestVerifier(tb testing.TB) (ed25519.PrivateKey, *scoped.Verifier) {
	tb.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k1.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	v, err := scoped.NewVerifier(scoped.VerifierOptions{PublicKeyDir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	return priv, v
}
