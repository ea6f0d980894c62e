package access

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
)

// TestMintingEndpoint: an agent platform's ServiceAccount that RBAC lets
// reach a sandbox mints a short-lived scoped token for it at
// POST /sandbox-router/v1/tokens on the router binary, without holding a
// key; the token opens that sandbox only, its entry link starts a browser
// session, and the endpoint refuses who may not reach the sandbox and
// scoped tokens as credentials.
func TestMintingEndpoint(t *testing.T) {
	e := newEnv(t)
	keys, keyFile := t.TempDir(), filepath.Join(t.TempDir(), "k1.key")
	priv := writeKey(t, keys, "k1")
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	platform := e.serviceAccount(t, agents, "minting-platform")
	e.grant(t, teamA, "minting-platform", []rbacv1.Subject{sa(agents, "minting-platform")}, "sb1")
	stranger := e.serviceAccount(t, agents, "minting-stranger")

	p := e.startRouter(t, "--authz-mode", "kubernetes,scoped-token", "--authz-scoped-token-public-keys", keys,
		"--authz-mint-signing-key", keyFile, "--base-domain", "sandbox.test", "--authz-cookie-name", "sb-session")

	type minted struct {
		Token string   `json:"token"`
		Links []string `json:"links"`
		Code  string   `json:"code"`
	}
	mint := func(bearer, body string) (int, minted) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+p.HTTPAddr+"/sandbox-router/v1/tokens", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m minted
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatalf("mint answer: %v", err)
		}
		return resp.StatusCode, m
	}

	status, tok := mint(platform, `{"namespace":"team-a","name":"sb1","ttl":"5m"}`)
	if status != http.StatusCreated || tok.Token == "" {
		t.Fatalf("the platform mints for sb1: %d %+v", status, tok)
	}
	if got := get(t.Context(), p, teamA, "sb1", tok.Token); !got.served(teamA, "sb1") {
		t.Errorf("the minted token on sb1: %v", got)
	}
	for _, sb := range []string{"sb2", "sb3"} {
		if got := get(t.Context(), p, teamA, sb, tok.Token); !got.is(http.StatusForbidden, "sandbox_forbidden") {
			t.Errorf("the minted token on %s: %v, want 403", sb, got)
		}
	}
	for _, tc := range []struct {
		who, bearer, body string
		status            int
		code              string
	}{
		{"the platform, for a sandbox it may not reach", platform, `{"namespace":"team-a","name":"sb2"}`, 403, "sandbox_forbidden"},
		{"a stranger", stranger, `{"namespace":"team-a","name":"sb1"}`, 403, "sandbox_forbidden"},
		{"a stranger, for a sandbox that does not exist", stranger, `{"namespace":"team-a","name":"nope"}`, 403, "sandbox_forbidden"},
		{"a minted token", tok.Token, `{"namespace":"team-a","name":"sb1"}`, 401, "invalid_credentials"},
		{"a ttl over the maximum", platform, `{"namespace":"team-a","name":"sb1","ttl":"2h"}`, 400, "invalid_request"},
	} {
		if status, m := mint(tc.bearer, tc.body); status != tc.status || m.Code != tc.code {
			t.Errorf("%s: %d %q, want %d %q", tc.who, status, m.Code, tc.status, tc.code)
		}
	}

	// The entry link: 302 with a session cookie, then the cookie alone
	// reaches the sandbox.
	if len(tok.Links) != 1 {
		t.Fatalf("links %q, want one (host routing)", tok.Links)
	}
	link, err := url.Parse(tok.Links[0])
	if err != nil || !strings.HasPrefix(link.Host, "8888-sb1.team-a.sandbox.test:") {
		t.Fatalf("link %q: %v", tok.Links[0], err)
	}
	status, cookie := openLink(t, p, link)
	if status != http.StatusFound || cookie == nil {
		t.Fatalf("entry link: %d, cookie %v", status, cookie)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.HTTPAddr+"/", nil)
	req.Host = link.Host
	req.AddCookie(cookie)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"sandbox":"sb1"`)) {
		t.Errorf("with the session cookie: %d %s", resp.StatusCode, body)
	}
}

// openLink sends the GET a browser sends for link (its host name mapped to
// the router) without following the redirect, and returns the status and
// the session cookie set.
func openLink(t *testing.T, p *routerproc.Proc, link *url.URL) (int, *http.Cookie) {
	t.Helper()
	_, port, _ := net.SplitHostPort(p.HTTPAddr)
	if link.Port() != port {
		t.Fatalf("link %s: the port is not the router's %s", link, port)
	}
	u := *link
	u.Host = p.HTTPAddr
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u.String(), nil)
	req.Host = link.Host
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "sb-session" {
			return resp.StatusCode, c
		}
	}
	return resp.StatusCode, nil
}
