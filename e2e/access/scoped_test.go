package access

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sandbox-router/sandbox-router/access/scoped"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// TestScopedTokens runs the router binary with kubernetes and scoped-token
// together: v2 tokens bound to a sandbox's UID (and a method), v1 tokens
// as the upstream router mints them, ServiceAccount tokens beside them,
// every kind of bad token, and keys rotated while it runs.
func TestScopedTokens(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	keys, secretFile := t.TempDir(), filepath.Join(t.TempDir(), "secret")
	secret := []byte("a-v1-secret-of-more-than-thirty-two-bytes\n")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	k1 := writeKey(t, keys, "k1")
	p := e.startRouter(t, "--authz-mode", "kubernetes,scoped-token",
		"--authz-scoped-token-public-keys", keys, "--authz-scoped-token-secret-file", secretFile)

	uid := func(ns, name string) string {
		u, err := e.dyn.Resource(sandboxGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(u.GetUID())
	}
	now := time.Now()
	v2 := func(key ed25519.PrivateKey, kid, ns, name, uid string, methods ...string) string {
		tok, err := scoped.MintV2(key, scoped.Claims{KeyID: kid, Namespace: ns, Name: name, UID: uid, Expires: now.Add(time.Hour), Methods: methods}, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	forSB1 := v2(k1, "k1", teamA, "sb1", uid(teamA, "sb1"), http.MethodGet, http.MethodHead)
	v1, err := scoped.MintV1(secret, teamB, "sb2", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := scoped.MintV2(k1, scoped.Claims{KeyID: "k1", Namespace: teamA, Name: "sb1", UID: uid(teamA, "sb1"), Expires: now.Add(-time.Minute)}, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, strangerKey, _ := ed25519.GenerateKey(rand.Reader)

	t.Run("tokens and their scopes", func(t *testing.T) {
		cases := []struct {
			name, tok, ns, sb, method string
			wantStatus                int
			wantCode                  string
		}{
			{"v2 for its sandbox", forSB1, teamA, "sb1", http.MethodGet, 200, ""},
			{"v2 for another sandbox", forSB1, teamA, "sb2", http.MethodGet, 403, "sandbox_forbidden"},
			{"v2 in another namespace", forSB1, teamB, "sb1", http.MethodGet, 403, "sandbox_forbidden"},
			{"v2 with a method it does not allow", forSB1, teamA, "sb1", http.MethodPost, 403, "sandbox_forbidden"},
			{"v1 as upstream mints it", v1, teamB, "sb2", http.MethodGet, 200, ""},
			{"v1 for another sandbox", v1, teamB, "sb3", http.MethodGet, 403, "sandbox_forbidden"},
			{"expired", expired, teamA, "sb1", http.MethodGet, 401, "invalid_credentials"},
			{"tampered", forSB1[:len(forSB1)-4] + "AAAA", teamA, "sb1", http.MethodGet, 401, "invalid_credentials"},
			{"unknown key id", v2(strangerKey, "k9", teamA, "sb1", uid(teamA, "sb1")), teamA, "sb1", http.MethodGet, 401, "invalid_credentials"},
			{"signed by another key under k1", v2(strangerKey, "k1", teamA, "sb1", uid(teamA, "sb1")), teamA, "sb1", http.MethodGet, 401, "invalid_credentials"},
		}
		for _, tc := range cases {
			r := do(ctx, p, tc.method, tc.ns, tc.sb, tc.tok)
			if r.Status != tc.wantStatus || r.Code != tc.wantCode || tc.wantStatus == 200 && r.Sandbox != tc.sb {
				t.Errorf("%s: %v, want %d %q", tc.name, r, tc.wantStatus, tc.wantCode)
			}
		}
		// ServiceAccount tokens go on working beside scoped ones.
		tok := e.serviceAccount(t, agents, "scoped-neighbour")
		e.grant(t, teamB, "scoped-neighbour", []rbacv1.Subject{sa(agents, "scoped-neighbour")}, "sb1")
		if r := get(ctx, p, teamB, "sb1", tok); !r.served(teamB, "sb1") {
			t.Errorf("a ServiceAccount token beside scoped tokens: %v", r)
		}
	})

	t.Run("a v2 token is for one instance: not for a sandbox recreated under its name", func(t *testing.T) {
		const name = "reborn"
		create := func() string {
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": sim.Group + "/v1beta1", "kind": "Sandbox",
				"metadata": map[string]any{"name": name, "namespace": teamA},
				"spec":     map[string]any{"operatingMode": "Running"},
			}}
			u, err := e.dyn.Resource(sandboxGVR).Namespace(teamA).Create(ctx, obj, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return string(u.GetUID())
		}
		first := v2(k1, "k1", teamA, name, create())
		eventually(t, p, teamA, name, first, "the first instance served", func(r reply) bool { return r.served(teamA, name) })
		if err := e.dyn.Resource(sandboxGVR).Namespace(teamA).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, p, teamA, name, first, "the deleted instance refused", func(r reply) bool { return r.Status == http.StatusForbidden })
		second := v2(k1, "k1", teamA, name, create())
		eventually(t, p, teamA, name, second, "the second instance served", func(r reply) bool { return r.served(teamA, name) })
		if r := get(ctx, p, teamA, name, first); !r.is(http.StatusForbidden, "sandbox_forbidden") {
			t.Errorf("the first instance's token on the second: %v, want 403", r)
		}
	})

	t.Run("keys rotate without a restart", func(t *testing.T) {
		k2 := writeKey(t, keys, "k2")
		withK2 := v2(k2, "k2", teamA, "sb1", uid(teamA, "sb1"))
		eventually(t, p, teamA, "sb1", withK2, "a token of the added key k2", func(r reply) bool { return r.served(teamA, "sb1") })
		if r := get(ctx, p, teamA, "sb1", forSB1); !r.served(teamA, "sb1") {
			t.Errorf("k1 during the rotation: %v", r)
		}
		if err := os.Remove(filepath.Join(keys, "k1.pem")); err != nil {
			t.Fatal(err)
		}
		eventually(t, p, teamA, "sb1", forSB1, "k1's token refused once k1 is gone", func(r reply) bool {
			return r.is(http.StatusUnauthorized, "invalid_credentials")
		})
		if r := get(ctx, p, teamA, "sb1", withK2); !r.served(teamA, "sb1") {
			t.Errorf("k2 after the rotation: %v", r)
		}
	})
}

// writeKey makes an Ed25519 key pair and writes its public half as
// <kid>.pem into dir.
func writeKey(t *testing.T, dir, kid string) ed25519.PrivateKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	// Written aside and renamed in, as a Secret mount swaps its files.
	tmp := filepath.Join(dir, "."+kid+".tmp")
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, kid+".pem")); err != nil {
		t.Fatal(err)
	}
	return priv
}
