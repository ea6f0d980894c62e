package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/agent-sandbox/clients/go/sandbox"

	akube "github.com/sandbox-router/sandbox-router/access/kube"
	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

const (
	// sdkModule and sdkVersion are the SDK under test, unmodified.
	sdkModule  = "sigs.k8s.io/agent-sandbox"
	sdkVersion = "v1.0.1"

	ns     = "sdk"    // the sandboxes' namespace
	agents = "agents" // the ServiceAccounts' namespace
	// other is a sandbox no identity of the tests may reach.
	other = "other"

	// waitTimeout bounds every wait for a state to show, and every SDK
	// call.
	waitTimeout = 60 * time.Second
)

// ipBase keeps this package's pod addresses apart from the other e2e
// packages' sims, which go test may run at the same time.
var ipBase = netip.MustParseAddr("127.4.0.1")

func TestMain(m *testing.M) {
	code := m.Run()
	routerproc.RemoveShared()
	os.Exit(code)
}

// env is the cluster of TestStockSDK: our Sandbox CRD and upstream's
// SandboxClaim CRD, the router's grants, the sim and the claim controller
// on namespace sdk, the sandbox "other", and a Role that lets the SDK do
// its Kubernetes part (claims, reading sandboxes) but not reach any
// sandbox through the router.
type env struct {
	c   *cluster.Cluster
	sim *sim.Sim
	cs  kubernetes.Interface
	dyn dynamic.Interface
	bin string // the router binary
}

// sdkUserRole is what the SDK needs from the API server: create, watch and
// delete SandboxClaims, read Sandboxes.
const sdkUserRole = "sdk-user"

func newEnv(t *testing.T, sdkDir string) *env {
	t.Helper()
	c := cluster.Start(t)
	ctx := t.Context()
	e := &env{c: c, cs: kubernetes.NewForConfigOrDie(c.AdminConfig()), dyn: dynamic.NewForConfigOrDie(c.AdminConfig())}
	if err := c.ApplyCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	// The SandboxClaim CRD of the SDK's own module: the version the SDK
	// is built against.
	claimCRD := filepath.Join(sdkDir, "k8s", "crds", "extensions.agents.x-k8s.io_sandboxclaims.yaml")
	if err := cluster.ApplyManifests(ctx, c.AdminConfig(), claimCRD); err != nil {
		t.Fatal(err)
	}
	if err := c.GrantRouter(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cluster.CreateNamespaces(ctx, e.cs, ns, agents); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: sdkUserRole, Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{claimGVR.Group}, Resources: []string{claimGVR.Resource}, Verbs: []string{"create", "get", "list", "watch", "delete"}},
		{APIGroups: []string{sandboxGVR.Group}, Resources: []string{sandboxGVR.Resource}, Verbs: []string{"get", "list", "watch"}},
	}}
	if _, err := e.cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sim.Options{Config: c.AdminConfig(), Namespaces: []string{ns}, IPBase: ipBase})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	e.sim = s
	claims, err := startClaimController(ctx, e.dyn, ns, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(claims.stop)
	if e.bin, err = routerproc.Shared(); err != nil {
		t.Fatal(err)
	}
	e.claim(t, other)
	return e
}

// claim creates a SandboxClaim as a platform would for a user, waits
// until its sandbox's pod is Ready and returns the Sandbox's UID.
func (e *env) claim(t *testing.T, name string) string {
	t.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": claimGVR.GroupVersion().String(), "kind": "SandboxClaim",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"warmPoolRef": map[string]any{"name": "python-runtime"}},
	}}
	if _, err := e.dyn.Resource(claimGVR).Namespace(ns).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Ready as the SDK's GetSandbox checks it: the Sandbox's condition,
	// which the sim writes after the pod's.
	var uid string
	waitFor(t, "sandbox "+name+" Ready", func() (bool, error) {
		u, err := e.dyn.Resource(sandboxGVR).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		uid = string(u.GetUID())
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		return slices.ContainsFunc(conds, func(c any) bool {
			m, _ := c.(map[string]any)
			return m["type"] == "Ready" && m["status"] == "True"
		}), nil
	})
	return uid
}

// waitRoutable waits until the router routes requests for the sandbox with
// token to its pod. The router learns of a Sandbox from its informers a
// moment after the API server says it is Ready, and without the activator
// (--activator=false) it answers 503 sandbox_starting meanwhile, which the
// SDK's Run does not retry.
func waitRoutable(t *testing.T, router *routerproc.Proc, name, token string) {
	t.Helper()
	waitFor(t, "the router routing "+name, func() (bool, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+router.HTTPAddr+"/", nil)
		if err != nil {
			return false, err
		}
		req.Header.Set("X-Sandbox-ID", name)
		req.Header.Set("X-Sandbox-Namespace", ns)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		var body struct{ Sandbox string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode == http.StatusOK && body.Sandbox == name, err
	})
}

// serviceAccount creates a ServiceAccount in agents that may use the SDK's
// Kubernetes part in ns, and returns a token for it from the TokenRequest
// API (audience: the API server's, which the router's TokenReview takes).
func (e *env) serviceAccount(t *testing.T, name string) string {
	t.Helper()
	ctx := t.Context()
	tok, err := cluster.CreateServiceAccount(ctx, e.cs, agents, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.BindRole(ctx, e.cs, ns, name+"-"+sdkUserRole, sdkUserRole, cluster.ServiceAccountSubject(agents, name)); err != nil {
		t.Fatal(err)
	}
	return tok
}

// grantProxy lets the ServiceAccount reach the one sandbox through the
// router (create on sandboxes/proxy for that name), and waits until the
// API server's authorizer says so, so that the router's first review of
// it is not earlier than the grant.
func (e *env) grantProxy(t *testing.T, sa, sandboxName string) {
	t.Helper()
	ctx := t.Context()
	name := sa + "-proxy-" + sandboxName
	rules := []rbacv1.PolicyRule{{APIGroups: []string{akube.Group}, Resources: []string{akube.Resource + "/" + akube.Subresource},
		Verbs: []string{akube.Verb}, ResourceNames: []string{sandboxName}}}
	if err := cluster.Grant(ctx, e.cs, ns, name, rules, cluster.ServiceAccountSubject(agents, sa)); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	attrs := authorizationv1.ResourceAttributes{Namespace: ns, Verb: akube.Verb, Group: akube.Group,
		Resource: akube.Resource, Subresource: akube.Subresource, Name: sandboxName}
	if err := cluster.WaitAllowed(wctx, e.cs, cluster.ServiceAccountUser(agents, sa), cluster.ServiceAccountGroups(agents), attrs, true); err != nil {
		t.Fatalf("the grant of %s to %s in effect: %v", sandboxName, sa, err)
	}
}

// mint makes a v2 scoped token for the sandbox name (bound to its uid)
// with the router binary's token subcommand, signed by the key kid of dir.
func (e *env) mint(t *testing.T, dir, kid, name, uid string, extra ...string) string {
	t.Helper()
	args := append([]string{"token", "--key", filepath.Join(dir, kid+".key"), "--kid", kid,
		"--namespace", ns, "--name", name, "--uid", uid, "--ttl", "1h"}, extra...)
	out, err := exec.CommandContext(t.Context(), e.bin, args...).Output()
	if err != nil {
		t.Fatalf("sandbox-router %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// startRouter runs the router binary as the non-admin user "router".
// Loopback pod addresses are allowed because the sim's pods live on
// 127.4.0.x and the SDK sends the address it read from the Sandbox's
// status as X-Sandbox-Pod-IP.
func (e *env) startRouter(t *testing.T, args ...string) *routerproc.Proc {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "router.kubeconfig")
	if err := e.c.WriteKubeconfig(kubeconfig, e.c.RouterToken); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--kubeconfig", kubeconfig, "--allow-loopback-pod-ip", "--access-log", "off", "--activator=false"}, args...)
	return routerproc.ForTest(t, routerproc.Options{Bin: e.bin, Args: args})
}

// bearer is the RoundTripper a user of the SDK passes as its
// HTTPTransport to send a token: it sets Authorization on a copy of each
// request. It also keeps the last request's headers, to show what the SDK
// sent.
type bearer struct {
	token string
	next  *http.Transport
	mu    sync.Mutex
	last  http.Header
}

func newBearer(t *testing.T, token string) *bearer {
	next := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(next.CloseIdleConnections)
	return &bearer{token: token, next: next}
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	b.mu.Lock()
	b.last = r.Header.Clone()
	b.mu.Unlock()
	return b.next.RoundTrip(r)
}

func (b *bearer) lastHeader() http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// sdkOptions points the SDK at the router (direct URL mode) and at the API
// server as the ServiceAccount of k8sToken. transport nil leaves the SDK's
// own default transport: no credentials to the router at all.
func (e *env) sdkOptions(t *testing.T, router *routerproc.Proc, k8sToken string, transport http.RoundTripper) sandbox.Options {
	return sandbox.Options{
		Namespace:           ns,
		APIURL:              "http://" + router.HTTPAddr,
		HTTPTransport:       transport,
		RestConfig:          e.c.TokenConfig(k8sToken),
		Logger:              testr.New(t),
		SandboxReadyTimeout: waitTimeout,
		RequestTimeout:      waitTimeout,
		PerAttemptTimeout:   waitTimeout / 2,
		CleanupTimeout:      waitTimeout,
	}
}

// attach connects the SDK to the existing claim by name (GetSandbox: the
// claim's sandbox, verified Ready through the API server), and disconnects
// it (the claim stays) when the test ends.
func attach(t *testing.T, opts sandbox.Options, claim string) *sandbox.Sandbox {
	t.Helper()
	client, err := sandbox.NewClient(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := client.GetSandbox(t.Context(), claim, ns)
	if err != nil {
		t.Fatalf("GetSandbox(%s): %v", claim, err)
	}
	t.Cleanup(func() {
		if err := sb.Disconnect(context.Background()); err != nil {
			t.Errorf("Disconnect(%s): %v", claim, err)
		}
	})
	return sb
}

// TestStockSDK runs the stock SDK through the router binary in each access
// mode: Run, Write, Read, List and Exists served by the sandbox's own pod
// for the right credential, 403 for a credential of another sandbox, 401
// without one.
func TestStockSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("the real etcd + kube-apiserver test is skipped in -short mode")
	}
	e := newEnv(t, stockSDK(t))
	otherUID := string(mustSandbox(t, e, other).GetUID())

	t.Run("kubernetes mode: ServiceAccount token and RBAC per sandbox", func(t *testing.T) {
		ctx := t.Context()
		router := e.startRouter(t, "--authz-mode", "kubernetes")
		tok := e.serviceAccount(t, "coder")
		rt := newBearer(t, tok)

		// The SDK's full life cycle: Open creates a SandboxClaim and
		// waits for its Sandbox to be Ready; Close deletes the claim.
		opts := e.sdkOptions(t, router, tok, rt)
		opts.WarmPoolName = "python-runtime"
		sb, err := sandbox.New(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := sb.Open(ctx); err != nil {
			t.Fatalf("Open: %v", err)
		}
		name := sb.SandboxName()
		closed := false
		t.Cleanup(func() {
			if !closed {
				sb.Close(context.Background())
			}
		})
		pod, ok := e.sim.PodInfo(ns, name)
		if !ok {
			t.Fatalf("no pod for %s", name)
		}
		t.Logf("the SDK opened claim %s: sandbox %s, pod %s at %s", sb.ClaimName(), name, pod.Name, pod.IP)
		e.grantProxy(t, "coder", name)
		waitRoutable(t, router, name, tok)

		exercise(t, sb, pod.Name)
		h := rt.lastHeader()
		for header, want := range map[string]string{
			"X-Sandbox-Id": name, "X-Sandbox-Namespace": ns, "X-Sandbox-Port": "8888", "X-Sandbox-Pod-Ip": pod.IP.String(),
		} {
			if got := h.Get(header); got != want {
				t.Errorf("the SDK sent %s: %q, want %q", header, got, want)
			}
		}
		if h.Get("X-Sandbox-Timeout") == "" || h.Get("X-Request-Id") == "" {
			t.Errorf("the SDK sent no X-Sandbox-Timeout or X-Request-ID: %v", h)
		}

		// The same token for a sandbox RBAC does not grant: 403.
		refused(t, attach(t, e.sdkOptions(t, router, tok, newBearer(t, tok)), other), http.StatusForbidden, "sandbox_forbidden")
		// The SDK's own transport, no token: 401.
		refused(t, attach(t, e.sdkOptions(t, router, tok, nil), sb.ClaimName()), http.StatusUnauthorized, "missing_credentials")

		closed = true
		if err := sb.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		waitFor(t, "the sandbox deleted with its claim", func() (bool, error) {
			_, err := e.dyn.Resource(sandboxGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		})
	})

	t.Run("scoped tokens minted by the router binary", func(t *testing.T) {
		ctx := t.Context()
		// keygen writes the key pair; the router gets the public half
		// only, as an operator mounts it from a Secret.
		mintDir, publicDir := t.TempDir(), t.TempDir()
		if out, err := exec.CommandContext(ctx, e.bin, "keygen", "--kid", "sdk-1", "--dir", mintDir).CombinedOutput(); err != nil {
			t.Fatalf("sandbox-router keygen: %v\n%s", err, out)
		}
		pub, err := os.ReadFile(filepath.Join(mintDir, "sdk-1.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(publicDir, "sdk-1.pem"), pub, 0o644); err != nil {
			t.Fatal(err)
		}
		router := e.startRouter(t, "--authz-mode", "kubernetes,scoped-token", "--authz-scoped-token-public-keys", publicDir)

		const name = "scoped"
		uid := e.claim(t, name)
		pod, _ := e.sim.PodInfo(ns, name)
		// The SDK's own Kubernetes calls go as a ServiceAccount that RBAC
		// does not let reach any sandbox: the scoped token alone lets it in.
		k8sTok := e.serviceAccount(t, "scoped-user")

		tok := e.mint(t, mintDir, "sdk-1", name, uid)
		waitRoutable(t, router, name, tok)
		exercise(t, attach(t, e.sdkOptions(t, router, k8sTok, newBearer(t, tok)), name), pod.Name)

		// A token for another sandbox: 403.
		forOther := e.mint(t, mintDir, "sdk-1", other, otherUID)
		refused(t, attach(t, e.sdkOptions(t, router, k8sTok, newBearer(t, forOther)), name), http.StatusForbidden, "sandbox_forbidden")
		// ... which does work for its own sandbox.
		if res, err := attach(t, e.sdkOptions(t, router, k8sTok, newBearer(t, forOther)), other).Run(ctx, "hostname"); err != nil || res.ExitCode != 0 {
			t.Errorf("the token for %s on %s: %+v %v", other, other, res, err)
		}
		// The ServiceAccount's token, which RBAC does not grant: 403.
		refused(t, attach(t, e.sdkOptions(t, router, k8sTok, newBearer(t, k8sTok)), name), http.StatusForbidden, "sandbox_forbidden")
		// No token: 401.
		refused(t, attach(t, e.sdkOptions(t, router, k8sTok, nil), name), http.StatusUnauthorized, "missing_credentials")

		// A read-only token (GET and HEAD): the SDK's reads work, its
		// POSTs (Run, Write) get 403.
		ro := attach(t, e.sdkOptions(t, router, k8sTok, newBearer(t, e.mint(t, mintDir, "sdk-1", name, uid, "--method", "GET", "--method", "HEAD"))), name)
		if data, err := ro.Read(ctx, "notes.txt"); err != nil || !bytes.Equal(data, notes) {
			t.Errorf("read-only token, Read: %q %v", data, err)
		}
		if ok, err := ro.Exists(ctx, "notes.txt"); err != nil || !ok {
			t.Errorf("read-only token, Exists: %t %v", ok, err)
		}
		if _, err := ro.List(ctx, "/"); err != nil {
			t.Errorf("read-only token, List: %v", err)
		}
		_, err = ro.Run(ctx, "hostname")
		wantHTTPError(t, "read-only token, Run", err, http.StatusForbidden, "sandbox_forbidden")
		wantHTTPError(t, "read-only token, Write", ro.Write(ctx, "x.txt", []byte("x")), http.StatusForbidden, "sandbox_forbidden")
	})
}

// notes is what exercise writes to notes.txt.
var notes = []byte("line one\nline two: ünïcödé and a NUL \x00\n")

// exercise runs the SDK's operations on sb and checks that the sandbox's
// own pod (pod) answered them.
func exercise(t *testing.T, sb *sandbox.Sandbox, pod string) {
	t.Helper()
	ctx := t.Context()
	res, err := sb.Run(ctx, "hostname")
	if err != nil || res.ExitCode != 0 || res.Stdout != pod+"\n" {
		t.Fatalf(`Run("hostname"): %+v %v, want the pod name %s`, res, err, pod)
	}
	if res, err := sb.Run(ctx, `echo "hello from the stock SDK"`); err != nil || *res != (sandbox.ExecutionResult{Stdout: "hello from the stock SDK\n"}) {
		t.Errorf("Run(echo): %+v %v", res, err)
	}
	if res, err := sb.Run(ctx, "rm -rf /"); err != nil || res.ExitCode != 127 || res.Stderr == "" {
		t.Errorf("Run(rm): %+v %v, want exit 127 from the simulated runtime", res, err)
	}

	// "100%2Fsure.txt" goes out as /download/100%252Fsure.txt: decoded
	// on the way it would name 100/sure.txt, which does not exist.
	files := map[string][]byte{"notes.txt": notes, "100%2Fsure.txt": []byte("percent")}
	for name, content := range files {
		if err := sb.Write(ctx, name, content); err != nil {
			t.Fatalf("Write(%s): %v", name, err)
		}
	}
	for name, content := range files {
		if data, err := sb.Read(ctx, name); err != nil || !bytes.Equal(data, content) {
			t.Errorf("Read(%s): %q %v, want %q", name, data, err, content)
		}
	}
	if data, err := sb.Read(ctx, "/notes.txt"); err != nil || !bytes.Equal(data, notes) {
		t.Errorf("Read(/notes.txt): %q %v", data, err)
	}
	if res, err := sb.Run(ctx, "cat notes.txt"); err != nil || res.ExitCode != 0 || res.Stdout != string(notes) {
		t.Errorf("Run(cat notes.txt): %+v %v", res, err)
	}

	entries, err := sb.List(ctx, "/")
	if err != nil {
		t.Fatalf("List(/): %v", err)
	}
	var got []string
	for _, en := range entries {
		if en.Type != sandbox.FileTypeFile || en.Size != int64(len(files[en.Name])) || en.ModTime.IsZero() {
			t.Errorf("List(/): entry %+v", en)
		}
		got = append(got, en.Name)
	}
	if slices.Sort(got); !slices.Equal(got, []string{"100%2Fsure.txt", "notes.txt"}) {
		t.Errorf("List(/): %v", got)
	}

	for path, want := range map[string]bool{"notes.txt": true, "/notes.txt": true, "100%2Fsure.txt": true, "100/sure.txt": false, "missing.txt": false} {
		if ok, err := sb.Exists(ctx, path); err != nil || ok != want {
			t.Errorf("Exists(%s): %t %v, want %t", path, ok, err, want)
		}
	}

	// The sandbox's own refusal of a path out of its base directory comes
	// back as it was (its body, not the router's).
	_, err = sb.Read(ctx, "../etc/passwd")
	wantHTTPError(t, "Read(../etc/passwd)", err, http.StatusForbidden, "Access denied")
}

// refused checks that every SDK operation on sb gets status with the
// router's error code.
func refused(t *testing.T, sb *sandbox.Sandbox, status int, code string) {
	t.Helper()
	ctx := t.Context()
	_, err := sb.Run(ctx, "hostname")
	wantHTTPError(t, "Run", err, status, code)
	wantHTTPError(t, "Write", sb.Write(ctx, "x.txt", []byte("x")), status, code)
	_, err = sb.Read(ctx, "notes.txt")
	wantHTTPError(t, "Read", err, status, code)
	_, err = sb.List(ctx, "/")
	wantHTTPError(t, "List", err, status, code)
	_, err = sb.Exists(ctx, "notes.txt")
	wantHTTPError(t, "Exists", err, status, code)
}

// wantHTTPError checks that err is the SDK's HTTPError with status and a
// body that contains text.
func wantHTTPError(t *testing.T, what string, err error, status int, text string) {
	t.Helper()
	var he *sandbox.HTTPError
	if !errors.As(err, &he) || he.StatusCode != status || !strings.Contains(he.Body, text) {
		t.Errorf("%s: %v, want the SDK's HTTPError %d with %q", what, err, status, text)
	}
}

// waitFor checks cond until it holds, failing the test at waitTimeout.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last error: %v)", what, waitTimeout, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func mustSandbox(t *testing.T, e *env, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := e.dyn.Resource(sandboxGVR).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// stockSDK checks that the test is built with the stock SDK (the version
// under test, not replaced, its module cache copy as the checksum database
// has it: go mod verify) and returns the SDK module's directory.
func stockSDK(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", "list", "-m", "-json", sdkModule).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", sdkModule, err)
	}
	var m struct {
		Version, Dir, Sum string
		Replace           any
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m.Version != sdkVersion || m.Replace != nil || m.Dir == "" {
		t.Fatalf("%s: %s", sdkModule, out)
	}
	if out, err := exec.CommandContext(t.Context(), "go", "mod", "verify").CombinedOutput(); err != nil {
		t.Fatalf("go mod verify: %v\n%s", err, out)
	}
	t.Logf("the SDK under test: %s %s %s, verified", sdkModule, m.Version, m.Sum)
	return m.Dir
}
