package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	akube "github.com/sandbox-router/sandbox-router/access/kube"
	extkube "github.com/sandbox-router/sandbox-router/dashboard/kube"
	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// viewersNS holds the viewers' ServiceAccounts; their Roles are in the
// teams' namespaces.
const viewersNS = "viewers"

// viewerTokens are the tokens of the router test's identities:
//
//   - viewer-a may get, list and watch team-a's sandboxes (and its
//     templates, warm pools and claims), and reach them through the
//     router;
//   - viewer-one may get one sandbox of team-b (oneSandbox), nothing else.
type viewerTokens struct{ a, one string }

const oneSandbox = "beta-01"

var viewers struct {
	once sync.Once
	tok  viewerTokens
	err  error
}

// identities creates the viewers once per env, and waits until RBAC
// allows them what their Roles say: the router caches its reviews'
// answers, so a grant it saw before it took effect would stay refused.
func (e *env) identities(t *testing.T) viewerTokens {
	t.Helper()
	viewers.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		viewers.tok, viewers.err = e.createViewers(ctx)
	})
	if viewers.err != nil {
		t.Fatal(viewers.err)
	}
	return viewers.tok
}

func (e *env) createViewers(ctx context.Context) (viewerTokens, error) {
	var tok viewerTokens
	if err := cluster.CreateNamespaces(ctx, e.cs, viewersNS); err != nil {
		return tok, err
	}
	type grant struct {
		ns    string
		rules []rbacv1.PolicyRule
		// checks are what must be allowed before the grant counts as
		// applied.
		checks []authorizationv1.ResourceAttributes
	}
	grants := map[string]grant{
		"viewer-a": {ns: teamA, rules: []rbacv1.PolicyRule{
			{APIGroups: []string{sim.Group}, Resources: []string{"sandboxes"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{akube.Group}, Resources: []string{akube.Resource + "/" + akube.Subresource}, Verbs: []string{akube.Verb}},
			{APIGroups: []string{extkube.Group}, Resources: []string{"sandboxtemplates", "sandboxwarmpools", "sandboxclaims"}, Verbs: []string{"get", "list", "watch"}},
		}, checks: []authorizationv1.ResourceAttributes{
			{Namespace: teamA, Verb: "list", Group: sim.Group, Resource: "sandboxes"},
			{Namespace: teamA, Verb: akube.Verb, Group: akube.Group, Resource: akube.Resource, Subresource: akube.Subresource, Name: "alpha-03"},
			{Namespace: teamA, Verb: "list", Group: extkube.Group, Resource: "sandboxwarmpools"},
		}},
		"viewer-one": {ns: teamB, rules: []rbacv1.PolicyRule{
			{APIGroups: []string{sim.Group}, Resources: []string{"sandboxes"}, Verbs: []string{"get"}, ResourceNames: []string{oneSandbox}},
		}, checks: []authorizationv1.ResourceAttributes{
			{Namespace: teamB, Verb: "get", Group: sim.Group, Resource: "sandboxes", Name: oneSandbox},
		}},
	}
	for who, g := range grants {
		if err := cluster.Grant(ctx, e.cs, g.ns, who, g.rules, cluster.ServiceAccountSubject(viewersNS, who)); err != nil {
			return tok, err
		}
		token, err := cluster.CreateServiceAccount(ctx, e.cs, viewersNS, who)
		if err != nil {
			return tok, err
		}
		if who == "viewer-a" {
			tok.a = token
		} else {
			tok.one = token
		}
		for _, attrs := range g.checks {
			if err := cluster.WaitAllowed(ctx, e.cs, cluster.ServiceAccountUser(viewersNS, who), cluster.ServiceAccountGroups(viewersNS), attrs, true); err != nil {
				return tok, err
			}
		}
	}
	return tok, nil
}

// startRouter runs the router binary as the user "router" on the env's
// cluster with the dashboard, sign-in by Kubernetes token, and the
// activator, until t ends.
func (e *env) startRouter(t *testing.T) *routerproc.Proc {
	t.Helper()
	bin, err := routerproc.Shared()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "router.kubeconfig")
	if err := e.c.WriteKubeconfig(kubeconfig, e.c.RouterToken); err != nil {
		t.Fatal(err)
	}
	return routerproc.ForTest(t, routerproc.Options{Bin: bin, LogPath: filepath.Join(dir, "router.log"), Args: []string{
		"--kubeconfig", kubeconfig, "--allow-loopback-pod-ip", "--access-log", "off",
		"--authz-mode", "kubernetes",
		"--listen-dashboard", "127.0.0.1:0", "--dashboard-router-url", "http://sandboxes.test",
	}})
}

// waitAcross is waitValue across a navigation the page starts itself (a
// redirect to sign in, the return after it): a poll in the page ends with
// the page, so it evaluates expr again, in whatever page is there, until
// its JSON is want's or the step's deadline passes.
func (b *browser) waitAcross(t *testing.T, ctx context.Context, what, expr string, want any) {
	t.Helper()
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var got any
	for {
		try, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := chromedp.Run(try, chromedp.Evaluate[any](expr))
		cancel()
		if err == nil {
			got = v
			if g, _ := json.Marshal(v); string(g) == string(w) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v\n got %v\nwant %s", what, ctx.Err(), got, w)
		case <-tick.C:
		}
	}
}

// paste puts text into the focused field as a paste would: one input
// event, not a key press per character.
func (b *browser) paste(t *testing.T, ctx context.Context, sel, text string) {
	t.Helper()
	b.run(t, ctx, "focus "+sel, chromedp.Focus(chromedp.CSS(sel)))
	eval[any](t, ctx, fmt.Sprintf(`(() => { const el = document.querySelector(%s); el.value = ''; el.focus(); return true; })()`, mustJSON(sel)))
	if _, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: text}); err != nil {
		t.Fatalf("paste into %s: %v", sel, err)
	}
}

// signIn pastes token on the sign-in page, which must be open, and
// submits it.
func (b *browser) signIn(t *testing.T, ctx context.Context, token string) {
	t.Helper()
	b.waitAcross(t, ctx, "the sign-in page", `location.pathname`, "/signin")
	b.paste(t, ctx, "#token", token)
	b.waitValue(t, ctx, "the token in the field", `document.getElementById('token').value.length`, len(token))
	b.run(t, ctx, "submit", chromedp.Click(chromedp.CSS("#submit")))
}

// signOut uses the header's control and lands on the sign-in page.
func (b *browser) signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	b.run(t, ctx, "sign out", chromedp.Click(chromedp.CSS("header .session button")))
	b.waitAcross(t, ctx, "signed out", `location.pathname`, "/signin")
}

// throughRouter sends a request to the sandbox through the router's
// HTTP listener as the holder of token, and returns the answer's status
// and the start of its body.
func throughRouter(ctx context.Context, p *routerproc.Proc, ns, name, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTPAddr+"/", nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Sandbox-ID", name)
	req.Header.Set("X-Sandbox-Namespace", ns)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(body), err
}

// apiGet reads a dashboard API path with a bearer token.
func apiGet(tb testing.TB, url, token string) (int, string) {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestDashboardThroughTheRouter runs the router binary's dashboard with
// sign-in on the package's cluster: a viewer signs in with a
// ServiceAccount token and sees what RBAC lets it list; a sandbox
// suspended through the API server and woken by a request through the
// router's own listener shows both on the open page, and the wake-up in
// the sandbox's events and the busiest sandboxes; a viewer allowed to get
// one sandbox sees that one only; a bad token and another origin are
// refused.
func TestDashboardThroughTheRouter(t *testing.T) {
	chromium(t)
	e := newEnv(t)
	tok := e.identities(t)
	// A warm pool in each team, for the overview's fill: viewer-a may
	// list team-a's only.
	t.Cleanup(func() { e.deleteExts(t) })
	for _, ns := range []string{teamA, teamB} {
		e.createExt(t, templateGVR, "SandboxTemplate", ns, "python", map[string]any{"podTemplate": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "runtime", "image": "registry.example/python:3.13"}},
		}}})
		e.createExt(t, poolGVR, "SandboxWarmPool", ns, "python-pool", map[string]any{"sandboxTemplateRef": map[string]any{"name": "python"}, "replicas": 3})
		e.patchExtStatus(t, poolGVR, ns, "python-pool", `{"status":{"replicas":3,"readyReplicas":2}}`)
	}
	began := time.Now()
	p := e.startRouter(t)
	t.Logf("router ready in %v", time.Since(began).Round(time.Millisecond))
	base := "http://" + p.DashboardAddr + "/"
	b := startBrowser(t)
	teamAKeys := keys(e.sbs, func(s sandbox) bool { return s.ns == teamA })
	noTeamB := `!document.body.innerText.includes('team-b') && !document.body.innerText.includes('beta-')`
	// The sandbox suspended by the admin and woken through the router.
	const ns, name = teamA, "alpha-03"

	ok := t.Run("sign in", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base)
		b.waitAcross(t, ctx, "sent to sign in", `location.pathname + location.search`, "/signin?next=%2F")
		b.waitValue(t, ctx, "the labelled field, focused", `[document.querySelector('label[for="token"]').textContent, document.activeElement.id]`, []string{"Token", "token"})
		b.paste(t, ctx, "#token", tok.a)
		b.screenshot(t, ctx, "signin")
		b.run(t, ctx, "submit", chromedp.Click(chromedp.CSS("#submit")))
		b.waitAcross(t, ctx, "back on the overview", `location.pathname`, "/")
		b.waitValue(t, ctx, "team-a's counts", jsCounts, counts(nA-suspA, suspA))
		b.waitValue(t, ctx, "total", `document.getElementById('total').textContent`, fmt.Sprintf("(%d in all)", nA))
		b.waitValue(t, ctx, "one namespace", `document.getElementById('namespaces').textContent`, "1")
		b.waitValue(t, ctx, "team-a's pool only", `['fill-pools', 'fill-desired', 'fill-ready'].map(id => document.getElementById(id).textContent)`, []string{"1", "3", "2"})
		b.waitValue(t, ctx, "signed in as", `(document.querySelector('header .session') || {}).textContent`, "Signed in as system:serviceaccount:"+viewersNS+":viewer-a Sign out")
		b.waitValue(t, ctx, "team-b nowhere", noTeamB, true)
	})
	if !ok {
		return
	}

	ok = t.Run("wake-up through the router", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base+"sandboxes")
		b.waitValue(t, ctx, "team-a's rows only", jsRows, teamAKeys)
		b.waitValue(t, ctx, "live", `document.getElementById('live').textContent`, "Live")
		state := fmt.Sprintf(`((s) => s[%s])(%s)`, mustJSON(ns+"/"+name), jsStates)
		b.waitValue(t, ctx, "running before", state, "running")
		// A mark a reload would wipe, and every state the row shows.
		eval[any](t, ctx, `window.notReloaded = true`)
		eval[any](t, ctx, fmt.Sprintf(`(() => { window.seen = []; new MutationObserver(() => { const s = (%s)[%s]; if (s && window.seen[window.seen.length-1] !== s) { window.seen.push(s); } }).observe(document.getElementById('rows'), {childList: true, subtree: true, characterData: true}); return true; })()`, jsStates, mustJSON(ns+"/"+name)))

		e.setMode(t, ns, name, "Suspended")
		b.waitValue(t, ctx, "suspended on the open page", state, "suspended")

		woke := time.Now()
		if code, body, err := throughRouter(ctx, p, ns, name, tok.a); err != nil || code != http.StatusOK {
			t.Fatalf("request through the router: %d %s %v", code, body, err)
		}
		t.Logf("the held request answered 200 after %v", time.Since(woke).Round(time.Millisecond))
		b.waitValue(t, ctx, "running again on the open page", state, "running")
		b.waitValue(t, ctx, "no reload", `window.notReloaded === true`, true)
		t.Logf("states the row showed: %v", eval[[]string](t, ctx, `window.seen`))
		e.waitState(t, ns, name, resolver.StateRunning)
		b.screenshot(t, ctx, "sandboxes")
	})
	if !ok {
		return
	}

	ok = t.Run("events", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base+"sandbox?namespace="+ns+"&name="+name)
		b.waitValue(t, ctx, "title", `document.getElementById('title').textContent`, ns+"/"+name)
		b.waitValue(t, ctx, "running", `((f) => f['State'])(`+jsFacts+`)`, "running")
		// The activator's wording (activator/events.go), newest first.
		b.waitValue(t, ctx, "the wake-up's events", `Array.from(document.querySelectorAll('#events li')).map(li => {
			const t = li.textContent;
			return t.includes('wake-up began: a request is held while the sandbox resumes') ? 'wake' :
				/ released 1 held request\(s\) after [0-9]+\.[0-9]{2}s, on ./.test(t) ? 'released' : t;
		})`, []string{"released", "wake"})
		b.waitValue(t, ctx, "the events section shown", `document.getElementById('events-section').hidden`, false)
		b.waitValue(t, ctx, "curl example", `document.getElementById('curl').textContent`,
			"curl -H 'X-Sandbox-ID: "+name+"' -H 'X-Sandbox-Namespace: "+ns+"' http://sandboxes.test/")
		b.screenshot(t, ctx, "sandbox")
	})
	if !ok {
		return
	}

	t.Run("activity", func(t *testing.T) {
		// The busiest sandboxes are request rates between two samples,
		// taken every 10 s: a sample shows the wake-up's request within
		// 20 s. A request every half second keeps the sandbox among them
		// in every later sample, so the page opened after the API showed
		// it cannot fall between two samples.
		trafficCtx, stopTraffic := context.WithCancel(t.Context())
		traffic := make(chan error, 1)
		go func() {
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-trafficCtx.Done():
					traffic <- nil
					return
				case <-tick.C:
				}
				if code, body, err := throughRouter(trafficCtx, p, ns, name, tok.a); err != nil && trafficCtx.Err() == nil || err == nil && code != http.StatusOK {
					traffic <- fmt.Errorf("request through the router: %d %s %v", code, body, err)
					return
				}
			}
		}()
		t.Cleanup(func() {
			stopTraffic()
			if err := <-traffic; err != nil {
				t.Error(err)
			}
		})
		var o struct {
			Busiest *struct {
				IntervalSeconds float64 `json:"intervalSeconds"`
				Sandboxes       []struct {
					Namespace, Name   string
					RequestsPerSecond float64
				} `json:"sandboxes"`
			} `json:"busiest"`
			LastHour     map[string]any `json:"lastHour"`
			HeldRequests *int           `json:"heldRequests"`
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := apiGet(t, base+"api/overview", tok.a)
			if code != http.StatusOK {
				t.Fatalf("api/overview: %d %s", code, body)
			}
			if err := json.Unmarshal([]byte(body), &o); err != nil {
				t.Fatal(err)
			}
			if o.Busiest != nil && len(o.Busiest.Sandboxes) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no busiest sandbox 30 s after the wake-up: %s", body)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if s := o.Busiest.Sandboxes[0]; s.Namespace != ns || s.Name != name || s.RequestsPerSecond <= 0 {
			t.Errorf("busiest: %+v, want %s/%s first", o.Busiest.Sandboxes, ns, name)
		}
		// The last hour is the whole replica's: not for viewer-a, who may
		// list team-a only.
		if o.LastHour != nil {
			t.Errorf("viewer-a sees the replica's last hour: %v", o.LastHour)
		}
		if o.HeldRequests == nil || *o.HeldRequests != 0 {
			t.Errorf("heldRequests %v, want 0", o.HeldRequests)
		}
		t.Logf("busiest %+v over %.0f s", o.Busiest.Sandboxes, o.Busiest.IntervalSeconds)

		ctx := b.step(t)
		b.open(t, ctx, base)
		b.waitValue(t, ctx, "busiest on the overview", `Array.from(document.querySelectorAll('#busiest tbody tr')).map(tr => tr.cells[0].textContent)`, []string{ns + "/" + name})
		b.waitValue(t, ctx, "activity sections shown, the last hour not", `['hour-section', 'busiest-section', 'held-section'].map(id => document.getElementById(id).hidden)`, []bool{true, false, false})
		b.waitValue(t, ctx, "team-a's counts", jsCounts, counts(nA-suspA, suspA))

		// The cluster's admin may list every namespace: the last hour too
		// (sampled once a minute: a test does not wait for the sample
		// after the wake-up; the figures since the start are there).
		code, body := apiGet(t, base+"api/overview", e.c.AdminToken)
		var all struct {
			LastHour map[string]any `json:"lastHour"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &all) != nil {
			t.Fatalf("api/overview as the admin: %d %s", code, body)
		}
		for _, f := range []string{"sinceStart", "resumes", "idleSuspensions"} {
			if _, ok := all.LastHour[f]; !ok {
				t.Errorf("the admin's lastHour has no %s: %v", f, all.LastHour)
			}
		}
		b.signOut(t, ctx)
		b.signIn(t, ctx, e.c.AdminToken)
		b.waitAcross(t, ctx, "back on the overview", `location.pathname`, "/")
		b.waitValue(t, ctx, "every section shown to the admin", `['hour-section', 'busiest-section', 'held-section'].map(id => document.getElementById(id).hidden)`, []bool{false, false, false})
		b.waitValue(t, ctx, "every namespace's counts", jsCounts, counts(nA+nB-suspA-suspB, suspA+suspB))
		b.screenshot(t, ctx, "overview")
	})

	ok = t.Run("one sandbox only", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base)
		b.signOut(t, ctx)
		b.signIn(t, ctx, tok.one)
		b.waitAcross(t, ctx, "back on the overview", `location.pathname`, "/")
		b.waitValue(t, ctx, "signed in as", `(document.querySelector('header .session') || {}).textContent`, "Signed in as system:serviceaccount:"+viewersNS+":viewer-one Sign out")
		b.waitValue(t, ctx, "no counts", jsCounts, counts(0, 0))
		b.waitValue(t, ctx, "nothing in all", `document.getElementById('total').textContent`, "(0 in all)")
		b.waitValue(t, ctx, "no namespace", `document.getElementById('namespaces').textContent`, "0")
		b.waitValue(t, ctx, "no pool", `document.getElementById('fill-pools').textContent`, "0")

		b.open(t, ctx, base+"sandboxes")
		b.waitValue(t, ctx, "nothing listed", `document.getElementById('summary').textContent`, "Nothing matches.")
		b.waitValue(t, ctx, "no rows", jsRows, []string{})

		b.open(t, ctx, base+"sandbox?namespace="+teamB+"&name="+oneSandbox)
		b.waitValue(t, ctx, "its one sandbox", `((f) => [f['State'], f['UID']])(`+jsFacts+`)`, []string{"running", e.uid(t, teamB, oneSandbox)})

		// Another sandbox of team-b answers as one that does not exist.
		notFound := func(sandboxName string) string {
			b.open(t, ctx, base+"sandbox?namespace="+teamB+"&name="+sandboxName)
			b.waitValue(t, ctx, sandboxName+": an error shown", `!document.getElementById('error').hidden && document.getElementById('error').textContent !== ''`, true)
			b.waitValue(t, ctx, sandboxName+": no details", `document.getElementById('details').textContent + document.getElementById('curl').textContent`, "")
			return eval[string](t, ctx, `document.getElementById('error').textContent`)
		}
		other, missing := notFound("beta-02"), notFound("no-such-sandbox")
		if other != missing || other == "" {
			t.Errorf("another team-b sandbox shows %q, a missing one %q: want the same", other, missing)
		}

		// The API with its bearer token: its sandbox, and nothing of team-a.
		if code, body := apiGet(t, base+"api/sandboxes/"+teamB+"/"+oneSandbox, tok.one); code != http.StatusOK || !strings.Contains(body, oneSandbox) {
			t.Errorf("api/sandboxes/%s/%s: %d %s", teamB, oneSandbox, code, body)
		}
		for _, path := range []string{"api/overview", "api/sandboxes?kind=all&size=200", "api/sandboxes?namespace=team-a", "api/sandboxes/team-a/alpha-00", "api/warmpools", "api/templates"} {
			code, body := apiGet(t, base+path, tok.one)
			if strings.Contains(body, teamA) || strings.Contains(body, "alpha-") {
				t.Errorf("GET %s as viewer-one (%d) shows too much: %s", path, code, body)
			}
		}
		if code, body := apiGet(t, base+"api/sandboxes/"+teamB+"/beta-02", tok.one); code != http.StatusNotFound {
			t.Errorf("another team-b sandbox: %d %s, want 404", code, body)
		}
	})
	if !ok {
		return
	}

	t.Run("refusals", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base)
		b.signOut(t, ctx)
		b.signIn(t, ctx, "not-a-kubernetes-token")
		b.waitValue(t, ctx, "the error shown", `!document.getElementById('error').hidden && document.getElementById('error').textContent.length > 0`, true)
		b.waitValue(t, ctx, "still signing in", `[location.pathname, document.getElementById('submit').disabled]`, []any{"/signin", false})
		t.Logf("an invalid token shows %q", eval[string](t, ctx, `document.getElementById('error').textContent`))

		// Another origin may not sign a browser in, even with a good token;
		// the same request from the dashboard's own origin may.
		post := func(origin string) *http.Response {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"api/session", strings.NewReader(fmt.Sprintf(`{"token":%q}`, tok.a)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Origin", origin)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		if resp := post("http://evil.example"); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
			t.Errorf("cross-origin sign-in: %d, cookies %v; want 403 and none", resp.StatusCode, resp.Cookies())
		}
		if resp := post("http://" + p.DashboardAddr); resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
			t.Errorf("same-origin sign-in: %d, cookies %v; want 200 and the session cookie", resp.StatusCode, resp.Cookies())
		}
	})
}
