package access

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
var ipBase = netip.MustParseAddr("127.2.0.1")

const (
	teamA, teamB = "team-a", "team-b"
	agents       = "agents" // the ServiceAccounts' namespace
	crowd        = "crowd"  // the 100 ServiceAccounts of the review count
	audience     = "sandbox-router"
)

var sandboxNames = []string{"sb1", "sb2", "sb3"}

var sandboxGVR = schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.e != nil {
		shared.e.close()
	}
	routerproc.RemoveShared()
	os.Exit(code)
}

// env is one cluster for the whole package (one API server per e2e
// package keeps make test short): the CRDs, the router's grants, three
// running sandboxes in each of two namespaces, and admin clients. Tests
// share it and keep apart by the names of their identities and roles.
type env struct {
	c   *cluster.Cluster
	sim *sim.Sim
	cs  kubernetes.Interface
	dyn dynamic.Interface
}

// shared is the package's env, started by the first test that asks.
var shared struct {
	once sync.Once
	e    *env
	err  error
}

// newEnv returns the package's env, starting it on first use.
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
	if e.sim != nil {
		e.sim.Close()
	}
	e.c.Close()
}

// populate applies the CRDs and the router's grants, and starts three
// sandboxes in each of team-a and team-b.
func (e *env) populate(ctx context.Context) error {
	if err := e.c.ApplyCRDs(ctx); err != nil {
		return err
	}
	if err := e.c.GrantRouter(ctx); err != nil {
		return err
	}
	if err := cluster.CreateNamespaces(ctx, e.cs, teamA, teamB, agents, crowd); err != nil {
		return err
	}
	s, err := sim.New(sim.Options{Config: e.c.AdminConfig(), Namespaces: []string{teamA, teamB}, IPBase: ipBase})
	if err != nil {
		return err
	}
	e.sim = s
	// The sim lives until close, not with the start-up's context.
	if err := s.Run(context.Background()); err != nil {
		return err
	}
	for _, ns := range []string{teamA, teamB} {
		for _, name := range sandboxNames {
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": sim.Group + "/v1beta1", "kind": "Sandbox",
				"metadata": map[string]any{"name": name, "namespace": ns},
				"spec":     map[string]any{"operatingMode": "Running"},
			}}
			if _, err := e.dyn.Resource(sandboxGVR).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
	}
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	for _, ns := range []string{teamA, teamB} {
		for _, name := range sandboxNames {
			if _, err := s.WaitPod(wctx, ns, name, func(p sim.PodInfo) bool { return p.Ready }); err != nil {
				return err
			}
		}
	}
	return nil
}

// serviceAccount creates a ServiceAccount and returns a token for it from
// the TokenRequest API, for the given audiences (none: the API server's).
func (e *env) serviceAccount(t testing.TB, ns, name string, audiences ...string) string {
	t.Helper()
	tok, err := cluster.CreateServiceAccount(t.Context(), e.cs, ns, name, audiences...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) token(t testing.TB, ns, name string, audiences ...string) string {
	t.Helper()
	tok, err := cluster.ServiceAccountToken(t.Context(), e.cs, ns, name, audiences...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// proxyRule is what reaching a sandbox through the router takes.
func proxyRule(names ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{akube.Group}, Resources: []string{akube.Resource + "/" + akube.Subresource},
		Verbs: []string{akube.Verb}, ResourceNames: names}
}

// grant lets the ServiceAccounts reach the named sandboxes of ns (all of
// them without names) with a Role and a RoleBinding called name.
func (e *env) grant(t testing.TB, ns, name string, subjects []rbacv1.Subject, names ...string) {
	t.Helper()
	if err := cluster.Grant(t.Context(), e.cs, ns, name, []rbacv1.PolicyRule{proxyRule(names...)}, subjects...); err != nil {
		t.Fatal(err)
	}
}

func sa(ns, name string) rbacv1.Subject { return cluster.ServiceAccountSubject(ns, name) }

// startRouter runs the router binary as the non-admin user "router".
func (e *env) startRouter(t testing.TB, args ...string) *routerproc.Proc {
	t.Helper()
	bin, err := routerproc.Shared()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "router.kubeconfig")
	if err := e.c.WriteKubeconfig(kubeconfig, e.c.RouterToken); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--kubeconfig", kubeconfig, "--allow-loopback-pod-ip", "--access-log", "off", "--activator=false"}, args...)
	return routerproc.ForTest(t, routerproc.Options{Bin: bin, Args: args})
}

// reply is what the router answered.
type reply struct {
	Status     int
	RetryAfter string
	Sandbox    string `json:"sandbox"`
	Namespace  string `json:"namespace"`
	Code       string `json:"code"`
	Challenge  string
	Err        error
}

func (r reply) String() string {
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	return fmt.Sprintf("%d sandbox=%s/%s code=%q", r.Status, r.Namespace, r.Sandbox, r.Code)
}

var client = &http.Client{Timeout: waitTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func get(ctx context.Context, p *routerproc.Proc, ns, name, token string) reply {
	return do(ctx, p, http.MethodGet, ns, name, token)
}

// do sends a request with method for the sandbox ns/name through p, with
// token as its bearer credential unless empty.
func do(ctx context.Context, p *routerproc.Proc, method, ns, name, token string) reply {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+p.HTTPAddr+"/", nil)
	if err != nil {
		return reply{Err: err}
	}
	req.Header.Set("X-Sandbox-ID", name)
	req.Header.Set("X-Sandbox-Namespace", ns)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{Err: err}
	}
	defer resp.Body.Close()
	r := reply{Status: resp.StatusCode, Challenge: resp.Header.Get("WWW-Authenticate"), RetryAfter: resp.Header.Get("Retry-After")}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{Err: err}
	}
	_ = json.Unmarshal(body, &r)
	return r
}

func (r reply) served(ns, name string) bool {
	return r.Err == nil && r.Status == http.StatusOK && r.Namespace == ns && r.Sandbox == name
}

func (r reply) is(status int, code string) bool {
	return r.Err == nil && r.Status == status && r.Code == code
}

// eventually sends requests until one satisfies ok.
func eventually(t *testing.T, p *routerproc.Proc, ns, name, token, what string, ok func(reply) bool) reply {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last reply
	for time.Now().Before(deadline) {
		if last = get(t.Context(), p, ns, name, token); ok(last) {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: last reply %v", what, last)
	return last
}

// TestKubernetesAccess runs the router binary on the real API server in
// each mode, with ServiceAccount tokens from the TokenRequest API and RBAC
// that grants per namespace and per sandbox name.
func TestKubernetesAccess(t *testing.T) {
	e := newEnv(t)
	// ada: every sandbox of team-a, and sb3 of team-b; bo: sb1 and sb2 of
	// team-a only; cy: nothing.
	tokens := map[string]string{}
	for _, name := range []string{"ada", "bo", "cy"} {
		tokens[name] = e.serviceAccount(t, agents, name)
	}
	e.grant(t, teamA, "ada-all", []rbacv1.Subject{sa(agents, "ada")})
	e.grant(t, teamB, "ada-sb3", []rbacv1.Subject{sa(agents, "ada")}, "sb3")
	e.grant(t, teamA, "bo-two", []rbacv1.Subject{sa(agents, "bo")}, "sb1", "sb2")
	may := map[string][]string{
		"ada": {"team-a/sb1", "team-a/sb2", "team-a/sb3", "team-b/sb3"},
		"bo":  {"team-a/sb1", "team-a/sb2"},
	}
	k := e.startRouter(t, "--authz-mode", "kubernetes", "--authz-decision-ttl", "2s", "--authz-decision-negative-ttl", "1s")

	t.Run("3 identities x 3 sandboxes x 2 namespaces as RBAC says", func(t *testing.T) {
		for _, who := range []string{"ada", "bo", "cy"} {
			for _, ns := range []string{teamA, teamB} {
				for _, name := range sandboxNames {
					r := get(t.Context(), k, ns, name, tokens[who])
					allowed := slices.Contains(may[who], ns+"/"+name)
					switch {
					case allowed && !r.served(ns, name):
						t.Errorf("%s -> %s/%s: %v, want served", who, ns, name, r)
					case !allowed && !r.is(http.StatusForbidden, "sandbox_forbidden"):
						t.Errorf("%s -> %s/%s: %v, want 403 sandbox_forbidden", who, ns, name, r)
					}
				}
			}
		}
	})

	t.Run("credentials", func(t *testing.T) {
		if r := get(t.Context(), k, teamA, "sb1", ""); !r.is(http.StatusUnauthorized, "missing_credentials") || r.Challenge == "" {
			t.Errorf("no token: %v (challenge %q)", r, r.Challenge)
		}
		if r := get(t.Context(), k, teamA, "sb1", "not-a-token"); !r.is(http.StatusUnauthorized, "invalid_credentials") {
			t.Errorf("garbage token: %v", r)
		}
		// A sandbox that does not exist: 404 to whom RBAC lets reach it
		// (ada may reach every name in team-a), 403 to the others, so
		// nobody learns what exists where they may not go.
		if r := get(t.Context(), k, teamA, "nope", tokens["ada"]); !r.is(http.StatusNotFound, "sandbox_not_found") {
			t.Errorf("ada -> team-a/nope: %v, want 404", r)
		}
		if r := get(t.Context(), k, teamA, "nope", tokens["bo"]); !r.is(http.StatusForbidden, "sandbox_forbidden") {
			t.Errorf("bo -> team-a/nope: %v, want 403", r)
		}
	})

	t.Run("audiences", func(t *testing.T) {
		ka := e.startRouter(t, "--authz-mode", "kubernetes", "--authz-tokenreview-audiences", audience)
		meant := e.token(t, agents, "ada", audience)
		if r := get(t.Context(), ka, teamA, "sb1", meant); !r.served(teamA, "sb1") {
			t.Errorf("a token for %q to a router that wants it: %v", audience, r)
		}
		if r := get(t.Context(), ka, teamA, "sb1", tokens["ada"]); !r.is(http.StatusUnauthorized, "invalid_credentials") {
			t.Errorf("a token for the API server to a router that wants %q: %v, want 401", audience, r)
		}
		if r := get(t.Context(), k, teamA, "sb1", meant); !r.is(http.StatusUnauthorized, "invalid_credentials") {
			t.Errorf("a token for %q to a router that wants the API server's audience: %v, want 401", audience, r)
		}
	})

	t.Run("tokenreview mode admits any authenticated identity", func(t *testing.T) {
		tr := e.startRouter(t, "--authz-mode", "tokenreview")
		for _, ns := range []string{teamA, teamB} {
			if r := get(t.Context(), tr, ns, "sb2", tokens["cy"]); !r.served(ns, "sb2") {
				t.Errorf("cy -> %s/sb2: %v", ns, r)
			}
		}
		if r := get(t.Context(), tr, teamA, "sb1", ""); !r.is(http.StatusUnauthorized, "missing_credentials") {
			t.Errorf("no token: %v", r)
		}
	})

	t.Run("a RoleBinding removed takes effect within the decision TTL", func(t *testing.T) {
		if r := get(t.Context(), k, teamA, "sb2", tokens["bo"]); !r.served(teamA, "sb2") {
			t.Fatalf("bo -> team-a/sb2 before: %v", r)
		}
		removed := time.Now()
		if err := e.cs.RbacV1().RoleBindings(teamA).Delete(t.Context(), "bo-two", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, k, teamA, "sb2", tokens["bo"], "bo refused after the binding was removed", func(r reply) bool {
			return r.is(http.StatusForbidden, "sandbox_forbidden")
		})
		t.Logf("refused %v after the RoleBinding was removed (decision TTL 2s)", time.Since(removed).Round(time.Millisecond))
	})

	t.Run("API server down: cached decisions go on, new ones get 503, all recover", func(t *testing.T) {
		if r := get(t.Context(), k, teamA, "sb1", tokens["ada"]); !r.served(teamA, "sb1") {
			t.Fatalf("before: %v", r)
		}
		late := e.token(t, agents, "cy") // never shown to the router
		if err := e.c.KillAPIServer(); err != nil {
			t.Fatal(err)
		}
		// The cached answer serves on, also once it is past its 2 s TTL
		// and the review to refresh it fails (a stale answer, counted).
		deadline := time.Now().Add(waitTimeout)
		for staleServed(t, k) == 0 {
			if r := get(t.Context(), k, teamA, "sb1", tokens["ada"]); !r.served(teamA, "sb1") {
				t.Fatalf("ada -> team-a/sb1 while the API server is down: %v, want served from the cache", r)
			}
			if time.Now().After(deadline) {
				t.Fatal("no stale answer served while the API server was down")
			}
			time.Sleep(100 * time.Millisecond)
		}
		// A sandbox nobody asked about yet (that it does not exist is
		// not the point: the decision comes first).
		if r := get(t.Context(), k, teamB, "unasked", tokens["ada"]); !r.is(http.StatusServiceUnavailable, "access_unavailable") {
			t.Errorf("an uncached decision while down: %v, want 503 access_unavailable", r)
		}
		if r := get(t.Context(), k, teamA, "sb1", late); !r.is(http.StatusServiceUnavailable, "access_unavailable") {
			t.Errorf("an uncached token while down: %v, want 503 access_unavailable", r)
		}
		if err := e.c.StartAPIServer(t.Context()); err != nil {
			t.Fatal(err)
		}
		eventually(t, k, teamB, "sb3", tokens["ada"], "ada -> team-b/sb3 after the API server came back", func(r reply) bool { return r.served(teamB, "sb3") })
		eventually(t, k, teamA, "sb1", late, "cy's new token after the API server came back", func(r reply) bool {
			return r.is(http.StatusForbidden, "sandbox_forbidden")
		})
	})

	t.Run("reviews stay bounded: 10,000 requests from 100 identities", func(t *testing.T) {
		const identities, perIdentity = 100, 100
		var subjects []rbacv1.Subject
		ids := make([]string, identities)
		for i := range identities {
			name := fmt.Sprintf("agent-%03d", i)
			ids[i] = e.serviceAccount(t, crowd, name)
			subjects = append(subjects, sa(crowd, name))
		}
		e.grant(t, teamA, "crowd", subjects, "sb1", "sb2")
		b := e.startRouter(t, "--authz-mode", "kubernetes")
		before, err := e.c.AuditEvents()
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed []string
		work := make(chan [2]int)
		for range 16 {
			wg.Go(func() {
				for w := range work {
					name := sandboxNames[w[1]%2]
					if r := get(t.Context(), b, teamA, name, ids[w[0]]); !r.served(teamA, name) {
						mu.Lock()
						failed = append(failed, r.String())
						mu.Unlock()
					}
				}
			})
		}
		start := time.Now()
		for j := range perIdentity {
			for i := range identities {
				work <- [2]int{i, j}
			}
		}
		close(work)
		wg.Wait()
		elapsed := time.Since(start)
		if len(failed) > 0 {
			t.Fatalf("%d of %d requests failed; first: %s", len(failed), identities*perIdentity, failed[0])
		}
		after, err := e.c.AuditEvents()
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		for _, ev := range after[len(before):] {
			if ev.User == "router" && ev.Verb == "create" {
				counts[ev.Resource]++
			}
		}
		t.Logf("%d requests from %d identities to 2 sandboxes in %v: %d TokenReviews, %d SubjectAccessReviews",
			identities*perIdentity, identities, elapsed.Round(time.Millisecond), counts["tokenreviews"], counts["subjectaccessreviews"])
		// One review per token and per identity and sandbox; a TTL that
		// runs out during a slow run adds at most one more of each.
		if n := counts["tokenreviews"]; n < identities || n > 2*identities {
			t.Errorf("%d TokenReviews for %d tokens", n, identities)
		}
		if n := counts["subjectaccessreviews"]; n < 2*identities || n > 4*identities {
			t.Errorf("%d SubjectAccessReviews for %d identities x 2 sandboxes", n, identities)
		}
	})
}

// staleServed is how many answers the router served past their TTL
// because the API server could not be asked.
func staleServed(t *testing.T, p *routerproc.Proc) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "sandbox_router_access_cache_total{") && strings.Contains(line, `result="stale"`) {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			sum += v
		}
	}
	return sum
}
