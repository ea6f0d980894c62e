package mcpe2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	akube "github.com/sandbox-router/sandbox-router/access/kube"
	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// waitTimeout bounds every wait for a state to show.
const waitTimeout = 60 * time.Second

// ipBase keeps this package's pod addresses apart from the other e2e
// packages' sims, which go test may run at the same time.
var ipBase = netip.MustParseAddr("127.7.0.1")

const (
	teamA, teamB = "team-a", "team-b"
	agents       = "agents" // the ServiceAccounts' namespace
	mcpHost      = "mcp.sandbox.test"
)

var sandboxGVR = schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.e != nil {
		shared.e.close()
	}
	routerproc.RemoveShared()
	os.Exit(code)
}

// env is the package's one cluster: the Sandbox and SandboxClaim CRDs,
// the router's grants, the sim (whose pods serve the runtime API) and a
// claim controller in team-a, and sandboxes in team-a and team-b; the
// router binary with the MCP endpoint, as the non-admin user "router",
// in the kubernetes access mode with minting; and two identities:
//
//   - alice may reach every sandbox of team-a, patch them, and create and
//     delete their SandboxClaims;
//   - bob may reach team-a/beta only, and change nothing.
type env struct {
	c      *cluster.Cluster
	sim    *sim.Sim
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	stop   func() // the claim controller
	router *routerproc.Proc

	alice, bob string // their tokens
}

var shared struct {
	once sync.Once
	e    *env
	err  error
}

// newEnv returns the package's env, starting it on first use; the router
// runs for the test that started it... and every other: it is started
// outside any test, so it is stopped in TestMain.
func newEnv(tb testing.TB) *env {
	tb.Helper()
	shared.once.Do(func() { shared.e, shared.err = startEnv() })
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.e
}

func startEnv() (*env, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a cold build of kube-apiserver takes minutes
	defer cancel()
	c, err := cluster.New(ctx, cluster.Options{})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	e := &env{c: c, cs: kubernetes.NewForConfigOrDie(c.AdminConfig()), dyn: dynamic.NewForConfigOrDie(c.AdminConfig())}
	if err := e.populate(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.router != nil {
		_ = e.router.Stop()
	}
	if e.stop != nil {
		e.stop()
	}
	if e.sim != nil {
		e.sim.Close()
	}
	e.c.Close()
}

// The sandboxes of the env: running ones, and gamma, suspended.
var (
	teamASandboxes = []string{"alpha", "beta", "gamma"}
	teamBSandboxes = []string{"delta"}
)

func (e *env) populate(ctx context.Context) error {
	if err := e.c.ApplyCRDs(ctx); err != nil {
		return err
	}
	crd, err := sim.ClaimCRDPath()
	if err != nil {
		return err
	}
	if err := cluster.ApplyManifests(ctx, e.c.AdminConfig(), crd); err != nil {
		return err
	}
	if err := e.c.GrantRouter(ctx); err != nil {
		return err
	}
	if err := cluster.CreateNamespaces(ctx, e.cs, teamA, teamB, agents); err != nil {
		return err
	}
	s, err := sim.New(sim.Options{Config: e.c.AdminConfig(), Namespaces: []string{teamA, teamB}, IPBase: ipBase})
	if err != nil {
		return err
	}
	e.sim = s
	if err := s.Run(context.Background()); err != nil { // lives until close
		return err
	}
	if e.stop, err = sim.RunClaims(context.Background(), e.dyn, teamA, "v1beta1", func(string, ...any) {}); err != nil {
		return err
	}
	for ns, names := range map[string][]string{teamA: teamASandboxes, teamB: teamBSandboxes} {
		for _, name := range names {
			mode := "Running"
			if name == "gamma" {
				mode = "Suspended"
			}
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": sim.Group + "/v1beta1", "kind": "Sandbox",
				"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"tier": tierOf(name)}},
				"spec":     map[string]any{"operatingMode": mode},
			}}
			if _, err := e.dyn.Resource(sandboxGVR).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
	}
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	for _, k := range [][2]string{{teamA, "alpha"}, {teamA, "beta"}, {teamB, "delta"}} {
		if _, err := e.sim.WaitPod(wctx, k[0], k[1], func(p sim.PodInfo) bool { return p.Ready }); err != nil {
			return err
		}
	}
	if err := e.identities(ctx); err != nil {
		return err
	}
	return e.startRouter(ctx)
}

func tierOf(name string) string {
	if name == "alpha" {
		return "web"
	}
	return "batch"
}

// identities creates alice and bob and their grants.
func (e *env) identities(ctx context.Context) error {
	reach := func(names ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{akube.Group}, Resources: []string{akube.Resource + "/" + akube.Subresource},
			Verbs: []string{akube.Verb}, ResourceNames: names}
	}
	roles := map[string][]rbacv1.PolicyRule{
		"alice": {
			reach(),
			{APIGroups: []string{sim.Group}, Resources: []string{"sandboxes"}, Verbs: []string{"get", "list", "patch", "delete"}},
			{APIGroups: []string{"extensions.agents.x-k8s.io"}, Resources: []string{"sandboxclaims"}, Verbs: []string{"get", "watch", "create", "delete"}},
		},
		"bob": {reach("beta")},
	}
	for who, rules := range roles {
		if err := cluster.Grant(ctx, e.cs, teamA, who, rules, cluster.ServiceAccountSubject(agents, who)); err != nil {
			return err
		}
		tok, err := cluster.CreateServiceAccount(ctx, e.cs, agents, who)
		if err != nil {
			return err
		}
		if who == "alice" {
			e.alice = tok
		} else {
			e.bob = tok
		}
	}
	return nil
}

// startRouter runs the router binary as the user "router" with the MCP
// endpoint, the activator, and minting (for preview_url).
func (e *env) startRouter(ctx context.Context) error {
	bin, err := routerproc.Shared()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mcp-router-")
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "router.kubeconfig")
	if err := e.c.WriteKubeconfig(kubeconfig, e.c.RouterToken); err != nil {
		return err
	}
	keys := filepath.Join(dir, "keys")
	keyFile := filepath.Join(dir, "k1.key")
	if err := writeKeyPair(keys, keyFile, "k1"); err != nil {
		return err
	}
	p, err := routerproc.Start(ctx, routerproc.Options{Bin: bin, LogPath: filepath.Join(dir, "router.log"), Args: []string{
		"--kubeconfig", kubeconfig, "--allow-loopback-pod-ip", "--access-log", "off",
		"--authz-mode", "kubernetes,scoped-token", "--authz-scoped-token-public-keys", keys, "--authz-mint-signing-key", keyFile,
		"--base-domain", "sandbox.test", "--authz-cookie-name", "sb-session",
		"--mcp-host", mcpHost, "--mcp-public-url", "http://" + mcpHost,
		"--mcp-calls-per-second", "1000", // the tests call faster than a model; mcp/ tests the limit
	}})
	if err != nil {
		return err
	}
	e.router = p
	rctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	return p.WaitReady(rctx)
}

func writeKeyPair(dir, keyFile, kid string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, kid+".pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600)
}

// mcpURL is the endpoint as clients name it; the transport below sends
// it to the router's address.
const mcpURL = "http://" + mcpHost + "/mcp"

// hostTransport sends every request to the router's listener, keeping
// the URL's host as the Host header, and adds the bearer token.
type hostTransport struct {
	addr, token string
	base        http.RoundTripper
}

func (t *hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Host = t.addr
	if t.token != "" {
		r.Header.Set("Authorization", "Bearer "+t.token)
	}
	return t.base.RoundTrip(r)
}

// httpClient reaches the MCP endpoint as token.
func (e *env) httpClient(token string) *http.Client {
	return &http.Client{Transport: &hostTransport{addr: e.router.HTTPAddr, token: token, base: http.DefaultTransport}}
}

// connect opens an MCP session as token with the Go SDK's client.
func (e *env) connect(t *testing.T, token string, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	client := sdk.NewClient(&sdk.Implementation{Name: "e2e", Version: "1"}, opts)
	cs, err := client.Connect(t.Context(), &sdk.StreamableClientTransport{Endpoint: mcpURL, HTTPClient: e.httpClient(token)}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, e.router.Log())
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// startHostForwarder serves on 127.0.0.1 a proxy to the router that sets
// the Host of every request to host, for clients that cannot set it.
func startHostForwarder(t *testing.T, routerAddr, host string) string {
	t.Helper()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host, r.Out.Host = "http", routerAddr, host
		},
		FlushInterval: -1, // server-sent events as they come
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
