package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	akube "github.com/sandbox-router/sandbox-router/access/kube"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// The guarded router: a second router process on the same cluster with
// access control on, to show a request refused, one allowed, and a
// preview link opened with curl. The ServiceAccount team-a/agent may
// reach team-a/beta and nothing else (a Role with resourceNames).
const (
	agentNamespace = "team-a"
	agentName      = "agent"
	cookieName     = "sb-session"
	signingKeyID   = "demo"
)

// guarded is what the access checks need.
type guarded struct {
	http, admin string // the guarded router's listeners
	dashboard   string
	tokenFile   string // team-a/agent's token
	token       string
	keyDir      string // keygen's output: demo.key and demo.pem
	jar         string // curl's cookie jar for the printed lines
	link        string // a preview link to beta, minted before the checks
}

// setUpAccess grants team-a/agent beta, writes its token (TokenRequest)
// and makes the signing key with the router binary's own keygen.
func setUpAccess(ctx context.Context, e *env, tmp, routerBin string) (*guarded, error) {
	cs, err := kubernetes.NewForConfig(e.c.AdminConfig())
	if err != nil {
		return nil, err
	}
	if _, err := cs.CoreV1().ServiceAccounts(agentNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: agentName}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("service account: %w", err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "reach-beta", Namespace: agentNamespace}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{akube.Group}, Resources: []string{akube.Resource + "/" + akube.Subresource},
		Verbs: []string{akube.Verb}, ResourceNames: []string{"beta"},
	}, {
		// What the guarded router's dashboard shows it: team-a's
		// sandboxes (list), not the default namespace's.
		APIGroups: []string{sim.Group}, Resources: []string{"sandboxes"}, Verbs: []string{"get", "list"},
	}}}
	if _, err := cs.RbacV1().Roles(agentNamespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("role: %w", err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "reach-beta", Namespace: agentNamespace},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: agentNamespace, Name: agentName}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "reach-beta"}}
	if _, err := cs.RbacV1().RoleBindings(agentNamespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("role binding: %w", err)
	}
	day := int64(24 * 3600)
	tr, err := cs.CoreV1().ServiceAccounts(agentNamespace).CreateToken(ctx, agentName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &day}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	g := &guarded{token: tr.Status.Token, tokenFile: filepath.Join(tmp, "agent.token"), keyDir: filepath.Join(tmp, "keys"),
		jar: filepath.Join(tmp, "cookies.txt")}
	if err := os.WriteFile(g.tokenFile, []byte(g.token), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, routerBin, "keygen", "--kid", signingKeyID, "--dir", g.keyDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("keygen: %v: %s", err, out)
	}
	return g, nil
}

// guardedArgs are the guarded router's flags, listening on addr: RBAC
// per sandbox, scoped tokens verified with the demo key, minting with it,
// browser sessions, and the MCP endpoint on its own host.
func guardedArgs(e *env, g *guarded, o options, tmp, addr string) []string {
	_, port, _ := net.SplitHostPort(addr)
	return []string{
		"--kubeconfig", e.routerKubeconfig,
		"--allow-loopback-pod-ip",
		"--base-domain", baseDomain,
		"--listen-http", addr,
		"--listen-admin", "127.0.0.1:" + strconv.Itoa(o.AccessAdminPort),
		"--access-log", filepath.Join(tmp, "access-guarded.log"),
		"--drain-timeout", "2s",
		// The first router holds, resumes and suspends; this one only
		// shows who gets in.
		"--activator=false",
		"--authz-mode", "kubernetes,scoped-token",
		"--authz-scoped-token-public-keys", g.keyDir,
		"--authz-mint-signing-key", filepath.Join(g.keyDir, signingKeyID+".key"),
		"--authz-cookie-name", cookieName,
		"--authz-identity-headers",
		// MCP clients reach the endpoint by this name (*.localhost is
		// loopback) on the guarded router's port; the tools act as the
		// caller, so they need the authenticating authz mode above.
		"--mcp-host", mcpHost,
		"--mcp-public-url", "http://" + mcpHost + ":" + port,
		// Its dashboard asks for a token and shows what RBAC lets the
		// viewer list or get.
		"--listen-dashboard", "127.0.0.1:" + strconv.Itoa(o.AccessDashboardPort),
		"--dashboard-router-url", "http://" + addr,
	}
}

// waitGuarded waits until the guarded router is ready (its caches synced:
// a sandbox may answer before, but minting and MCP's listings wait for
// the whole cache) and lets the agent reach beta, then mints the preview
// link the checks open.
func waitGuarded(ctx context.Context, p *routerproc.Proc, g *guarded) error {
	g.http, g.admin, g.dashboard = p.HTTPAddr, p.AdminAddr, p.DashboardAddr
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	beta := request{url: "http://" + g.http + "/", headers: [][2]string{{"Authorization", "Bearer " + g.token},
		{"X-Sandbox-ID", "beta"}, {"X-Sandbox-Namespace", agentNamespace}}}
	if err := p.WaitReady(ctx); err != nil {
		return fmt.Errorf("guarded router: %w", err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		status, body, err := beta.send(ctx, client, false)
		if err == nil && status == http.StatusOK {
			break
		}
		select {
		case <-tick.C:
		case <-p.Exited():
			return fmt.Errorf("guarded router exited: %v", p.ExitErr())
		case <-ctx.Done():
			return fmt.Errorf("guarded router: beta not reachable with the agent's token within %s (last: %d %s %v)", readyTimeout, status, body, err)
		}
	}
	status, body, err := mintRequest(g).send(ctx, client, false)
	if err != nil || status != http.StatusCreated {
		return fmt.Errorf("minting a preview link: %d %s %v", status, body, err)
	}
	var m struct{ Links []string }
	if err := json.Unmarshal([]byte(body), &m); err != nil || len(m.Links) == 0 {
		return fmt.Errorf("minting a preview link: no link in %s", body)
	}
	g.link = m.Links[0]
	return nil
}

// mintRequest asks the guarded router for a 10-minute token for beta, as
// the agent.
func mintRequest(g *guarded) request {
	return request{method: http.MethodPost, url: "http://" + g.http + "/sandbox-router/v1/tokens",
		headers: [][2]string{{"Authorization", "Bearer " + g.token}, {"Content-Type", "application/json"}},
		body:    `{"namespace":"team-a","name":"beta","ttl":"10m"}`}
}

// accessChecks show the guarded router: no credential, the agent's token
// on its sandbox and on another, minting a preview link, and opening it
// with curl's cookie jar (a Go cookie jar here, which keeps cookies
// host-only as curl does).
func accessChecks(e *env) []check {
	g := e.guarded
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	proxy := "http://" + g.http
	bearer := `-H "Authorization: Bearer $(cat ` + g.tokenFile + `)"`
	auth := [2]string{"Authorization", "Bearer " + g.token}
	beta := [][2]string{{"X-Sandbox-ID", "beta"}, {"X-Sandbox-Namespace", agentNamespace}}
	// display renders r with the token read from its file, as a user
	// would type it.
	display := func(r request, flags string) string {
		kept := r.headers[:0:0]
		for _, h := range r.headers {
			if h[0] != "Authorization" {
				kept = append(kept, h)
			}
		}
		r.headers = kept
		return r.curl(strings.TrimSpace(flags+" "+bearer), "")
	}
	noToken := request{url: proxy + "/", headers: beta}
	betaReq := request{url: proxy + "/", headers: append([][2]string{auth}, beta...)}
	alphaReq := request{url: proxy + "/", headers: [][2]string{auth, {"X-Sandbox-ID", "alpha"}}}
	mint := mintRequest(g)

	// The browser's way, with a cookie jar and every *.localhost name
	// dialed at the guarded router.
	jar, _ := cookiejar.New(nil)
	var firstStatus int
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport: &http.Transport{Proxy: nil, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, g.http)
		}},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) == 1 {
				firstStatus = req.Response.StatusCode
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		}}
	_, port, _ := net.SplitHostPort(g.http)
	betaHost := "http://8888-beta.team-a." + baseDomain + ":" + port + "/"
	alphaHost := "http://8888-alpha.default." + baseDomain + ":" + port + "/"
	jarFlags := "-b " + g.jar + " -c " + g.jar

	return []check{
		httpCheck(client, []string{
			"access control: a second router on " + g.http + " with --authz-mode=kubernetes,scoped-token; the ServiceAccount",
			"team-a/agent may reach team-a/beta only (a Role with resourceNames: [beta] on sandboxes/proxy). No token:",
		}, noToken, "", "", "", expect{status: 401, code: "missing_credentials"}),
		httpCheck(client, []string{"the agent's token (TokenRequest) on its sandbox, and on another"},
			betaReq, "", "", display(betaReq, ""), expect{status: 200, sandbox: "beta"}),
		httpCheck(client, nil, alphaReq, "", "", display(alphaReq, ""), expect{status: 403, code: "sandbox_forbidden"}),
		httpCheck(client, []string{"the agent mints a 10-minute preview link for beta (no signing key needed); the demo minted",
			"the LINK below the same way before these requests"},
			mint, "", "", display(mint, ""), expect{status: 201, contains: `"links":["http://8888-beta.team-a.` + baseDomain}),
		{
			note: []string{"open the preview link as a browser would: 302 with a session cookie, then the page",
				"LINK='" + g.link + "'"},
			curl: "curl -s -L " + jarFlags + ` "$LINK"`,
			want: "302, then 200 from beta",
			do: func(ctx context.Context) (string, bool) {
				firstStatus = 0
				got, ok := browse(ctx, browser, g.link, "beta")
				u, _ := url.Parse(betaHost)
				set := slices.ContainsFunc(jar.Cookies(u), func(c *http.Cookie) bool { return c.Name == cookieName })
				return fmt.Sprintf("%d (cookie %s set: %v), then %s", firstStatus, cookieName, set, got), ok && set && firstStatus == http.StatusFound
			},
		},
		{
			note: []string{"the cookie alone reaches beta; curl's jar (like a browser) never sends it to another sandbox's host"},
			curl: "curl -s " + jarFlags + " " + betaHost,
			want: "200 from beta",
			do:   func(ctx context.Context) (string, bool) { return browse(ctx, browser, betaHost, "beta") },
		},
		{
			curl: "curl -s " + jarFlags + " " + alphaHost,
			want: "401 missing_credentials",
			do: func(ctx context.Context) (string, bool) {
				got, _ := browse(ctx, browser, alphaHost, "")
				return got, strings.HasPrefix(got, "401 ") && strings.Contains(got, "missing_credentials")
			},
		},
	}
}

// browse GETs target with the browser client and says what answered; ok when
// it was a 200 from sandbox (or, with sandbox "", never).
func browse(ctx context.Context, client *http.Client, target, sandbox string) (string, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err.Error(), false
	}
	resp, err := client.Do(req)
	if err != nil {
		return err.Error(), false
	}
	defer resp.Body.Close()
	var m struct{ Sandbox, Code string }
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if m.Sandbox != "" {
		return fmt.Sprintf("%d from %s", resp.StatusCode, m.Sandbox), sandbox != "" && resp.StatusCode == http.StatusOK && m.Sandbox == sandbox
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, m.Code), false
}
