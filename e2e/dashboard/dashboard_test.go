package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sandbox-router/sandbox-router/dashboard"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
	"github.com/sandbox-router/sandbox-router/resolver"
)

const (
	teamA, teamB = "team-a", "team-b"
	// waitTimeout bounds every wait: for the cluster's state, a page, a
	// DOM state.
	waitTimeout = 60 * time.Second
	routerURL   = "http://localhost:8080"
	// chromiumPath is where Debian's package chromium puts the browser.
	chromiumPath = "/usr/bin/chromium"
	// skipBrowserEnv, set to 1, skips the test on a machine without
	// Chromium (as in e2e/browser); nothing else does.
	skipBrowserEnv = "SANDBOX_ROUTER_SKIP_BROWSER"
	// screenshotsEnv, set to 1, writes docs/dashboard/*.png.
	screenshotsEnv = "DASHBOARD_SCREENSHOTS"
)

// ipBase keeps this package's pod addresses apart from the other e2e
// packages' sims, which go test may run at the same time.
var ipBase = netip.MustParseAddr("127.10.0.1")

var sandboxGVR = schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}

// The sandboxes: alpha-00..alpha-17 in team-a, beta-00..beta-11 in
// team-b; the last three of team-a and the last two of team-b are
// created Suspended.
const nA, nB, suspA, suspB = 18, 12, 3, 2

type sandbox struct {
	ns, name  string
	suspended bool
}

func (s sandbox) key() string { return s.ns + "/" + s.name }

func allSandboxes() []sandbox {
	var out []sandbox
	for i := range nA {
		out = append(out, sandbox{teamA, fmt.Sprintf("alpha-%02d", i), i >= nA-suspA})
	}
	for i := range nB {
		out = append(out, sandbox{teamB, fmt.Sprintf("beta-%02d", i), i >= nB-suspB})
	}
	return out
}

// keys lists the sandboxes' namespace/name that pass keep, in order.
func keys(sbs []sandbox, keep func(sandbox) bool) []string {
	var out []string
	for _, s := range sbs {
		if keep(s) {
			out = append(out, s.key())
		}
	}
	return out
}

// serve runs a dashboard with viewer (nil: everyone sees everything) on
// the resolver, on a loopback listener, until the test ends, and returns
// its URL (with the trailing slash).
func (e *env) serve(t *testing.T, viewer func(*http.Request) (dashboard.Viewer, error)) string {
	t.Helper()
	return e.serveOptions(t, dashboard.Options{Viewer: viewer})
}

// serveOptions is serve with more of the dashboard's options (its
// Sandboxes and RouterURL are the env's).
func (e *env) serveOptions(t *testing.T, opts dashboard.Options) string {
	t.Helper()
	opts.Sandboxes, opts.RouterURL = e.r, routerURL
	return runDashboard(t, opts)
}

// runDashboard runs a dashboard with opts and serves it on a loopback
// listener until the test ends; it returns its URL (with the trailing
// slash).
func runDashboard(tb testing.TB, opts dashboard.Options) string {
	tb.Helper()
	h, err := dashboard.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("dashboard Run: %v", err)
		}
	})
	return serveHandler(tb, h)
}

// hideNamespace is a Viewer that may list every namespace but one.
type hideNamespace string

func (h hideNamespace) MayList(_ context.Context, _ dashboard.Resource, ns string) bool {
	return ns != "" && ns != string(h) // not every namespace (""): one is hidden
}
func (h hideNamespace) MayGet(context.Context, string, string) bool { return false }

// browser is one headless Chromium with one tab, shared by the subtests.
type browser struct{ tab context.Context }

func chromium(t testing.TB) string {
	t.Helper()
	if os.Getenv(skipBrowserEnv) == "1" {
		t.Skipf("%s=1: browser tests skipped", skipBrowserEnv)
	}
	if _, err := os.Stat(chromiumPath); err == nil {
		return chromiumPath
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatalf("the dashboard tests need headless Chromium at %s (Debian: apt-get install -y chromium), or %s=1 to skip them", chromiumPath, skipBrowserEnv)
	return ""
}

type tail struct{ strings.Builder }

func (b *tail) Write(p []byte) (int, error) {
	if b.Len() > 64<<10 {
		return len(p), nil
	}
	return b.Builder.Write(p)
}

func startBrowser(t testing.TB) *browser {
	t.Helper()
	out := &tail{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		// As root in a container Chromium cannot set up its own sandbox.
		chromedp.NoSandbox,
		chromedp.Flag("no-proxy-server", true),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(out),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output:\n%s", out.String())
		}
	})
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start chromium: %v\n%s", err, out.String())
	}
	return &browser{tab: tab}
}

// step is the tab with a deadline for one step: every wait in it ends by
// then.
func (b *browser) step(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(b.tab, waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func (b *browser) open(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}

func (b *browser) run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates expr and returns its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitValue waits until the JSON of expr's value equals want's, and fails
// the test with the last value seen when the step's deadline passes.
func (b *browser) waitValue(t *testing.T, ctx context.Context, what, expr string, want any) {
	t.Helper()
	// As JSON.stringify writes it: no HTML escapes.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(want); err != nil {
		t.Fatal(err)
	}
	w := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	cond := fmt.Sprintf("JSON.stringify(%s) === %s", expr, mustJSON(string(w)))
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
		if err == nil {
			return
		}
		if ctx.Err() == nil && contextGone(err) {
			// The page's script context changed under the poll (the page
			// before went into the back-forward cache after this one
			// loaded): poll again in the page that is there.
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
				continue
			}
		}
		cctx, cancel := context.WithTimeout(b.tab, 5*time.Second)
		defer cancel()
		got, _ := chromedp.Run(cctx, chromedp.Evaluate[any](expr))
		t.Fatalf("%s: %v\n got %v\nwant %s", what, err, got, w)
	}
}

// contextGone reports whether err says that the JavaScript context an
// evaluation ran in went away, not that the expression failed.
func contextGone(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot find context with specified id") || strings.Contains(s, "Execution context was destroyed") ||
		strings.Contains(s, "Inspected target navigated or closed")
}

// mustJSON quotes s as a JavaScript string literal.
func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// screenshot writes the page to docs/dashboard/name.png when
// DASHBOARD_SCREENSHOTS=1.
func (b *browser) screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv(screenshotsEnv) != "1" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join("..", "..", "docs", "dashboard", name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", path, len(png))
}

// JavaScript reading what the pages show.
const (
	jsCounts = `Array.from(document.querySelectorAll('.count[data-state]')).map(e => e.dataset.state + ' ' + e.textContent)`
	jsRows   = `Array.from(document.querySelectorAll('#rows tr')).map(tr => tr.cells[0].textContent + '/' + tr.cells[1].textContent)`
	jsStates = `Object.fromEntries(Array.from(document.querySelectorAll('#rows tr')).map(tr => [tr.cells[0].textContent + '/' + tr.cells[1].textContent, tr.cells[2].textContent]))`
	jsFacts  = `Object.fromEntries(Array.from(document.querySelectorAll('#details dt')).map(dt => [dt.textContent, dt.nextElementSibling.textContent]))`
)

// counts is what jsCounts reads when running and suspended are as given
// and the other states empty.
func counts(running, suspended int) []string {
	return []string{fmt.Sprint("running ", running), "starting 0", "suspending 0", fmt.Sprint("suspended ", suspended), "finished 0"}
}

// setField sets a filter field's value and fires the event the page
// listens for (input for text boxes, change for selects).
func setField(id, value string) string {
	return fmt.Sprintf(`(() => { const el = document.getElementById(%s); el.value = %s; el.dispatchEvent(new Event(el.tagName === 'SELECT' ? 'change' : 'input', {bubbles: true})); return true; })()`,
		mustJSON(id), mustJSON(value))
}

// TestDashboard runs every view in one browser against one cluster.
func TestDashboard(t *testing.T) {
	chromium(t) // before the cluster: skip or fail fast
	start := time.Now()
	e := newEnv(t)
	base := e.serve(t, nil)
	b := startBrowser(t)
	all := keys(e.sbs, func(sandbox) bool { return true })
	running := len(keys(e.sbs, func(s sandbox) bool { return !s.suspended }))

	t.Run("overview", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base)
		b.waitValue(t, ctx, "counts by state", jsCounts, counts(running, suspA+suspB))
		b.waitValue(t, ctx, "total", `document.getElementById('total').textContent`, fmt.Sprintf("(%d in all)", len(e.sbs)))
		b.waitValue(t, ctx, "namespaces", `document.getElementById('namespaces').textContent`, "2")
		b.waitValue(t, ctx, "live status", `document.getElementById('live').textContent`, "Live")
	})

	t.Run("table", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base+"sandboxes")
		// Default order: namespace, then name; all 30 on the first page.
		b.waitValue(t, ctx, "all rows", jsRows, all)
		b.waitValue(t, ctx, "summary", `document.getElementById('summary').textContent`, fmt.Sprintf("1–%d of %d", len(all), len(all)))

		// Search: typed into the box.
		b.run(t, ctx, "type a search", chromedp.Focus(chromedp.CSS("#q")), chromedp.SendKeys(chromedp.CSS("#q"), "alpha-1"))
		b.waitValue(t, ctx, "search alpha-1", jsRows, keys(e.sbs, func(s sandbox) bool { return strings.HasPrefix(s.name, "alpha-1") }))
		eval[any](t, ctx, setField("q", ""))
		b.waitValue(t, ctx, "search cleared", jsRows, all)

		// Namespace filter.
		eval[any](t, ctx, setField("namespace", teamB))
		b.waitValue(t, ctx, "namespace team-b", jsRows, keys(e.sbs, func(s sandbox) bool { return s.ns == teamB }))
		eval[any](t, ctx, setField("namespace", ""))
		b.waitValue(t, ctx, "namespace cleared", jsRows, all)

		// State filter, and its counts in the options.
		eval[any](t, ctx, setField("state", "suspended"))
		b.waitValue(t, ctx, "state suspended", jsRows, keys(e.sbs, func(s sandbox) bool { return s.suspended }))
		b.waitValue(t, ctx, "state option counts",
			`Array.from(document.getElementById('state').options).map(o => o.textContent)`,
			[]string{"Any state", fmt.Sprintf("running (%d)", running), "starting (0)", "suspending (0)", fmt.Sprintf("suspended (%d)", suspA+suspB), "finished (0)"})
		// Both filters together.
		eval[any](t, ctx, setField("namespace", teamA))
		b.waitValue(t, ctx, "team-a and suspended", jsRows, keys(e.sbs, func(s sandbox) bool { return s.suspended && s.ns == teamA }))
		eval[any](t, ctx, setField("namespace", ""))
		eval[any](t, ctx, setField("state", ""))
		b.waitValue(t, ctx, "filters cleared", jsRows, all)

		// Sort by name: ascending, then descending on a second click.
		byName := slices.Clone(e.sbs)
		slices.SortFunc(byName, func(x, y sandbox) int { return strings.Compare(x.name, y.name) })
		asc := keys(byName, func(sandbox) bool { return true })
		b.run(t, ctx, "sort by name", chromedp.Click(chromedp.CSS(`th[data-sort="name"] button`)))
		b.waitValue(t, ctx, "sorted by name", jsRows, asc)
		b.waitValue(t, ctx, "aria-sort", `document.querySelector('th[data-sort="name"]').getAttribute('aria-sort')`, "ascending")
		b.run(t, ctx, "sort by name again", chromedp.Click(chromedp.CSS(`th[data-sort="name"] button`)))
		desc := slices.Clone(asc)
		slices.Reverse(desc)
		b.waitValue(t, ctx, "sorted by name, descending", jsRows, desc)
		b.waitValue(t, ctx, "url keeps the sort", `location.search`, "?sort=name&order=desc")
		// Sort by state: the suspended ones together, after the running.
		b.run(t, ctx, "sort by state", chromedp.Click(chromedp.CSS(`th[data-sort="state"] button`)))
		b.waitValue(t, ctx, "sorted by state", `Array.from(document.querySelectorAll('#rows tr')).map(tr => tr.cells[2].textContent).join(',')`,
			strings.TrimSuffix(strings.Repeat("running,", running)+strings.Repeat("suspended,", suspA+suspB), ","))
	})

	t.Run("live", func(t *testing.T) {
		ctx := b.step(t)
		b.open(t, ctx, base+"sandboxes")
		b.waitValue(t, ctx, "all rows", jsRows, all)
		b.waitValue(t, ctx, "connected", `document.getElementById('live').textContent`, "Live")
		// A mark a reload would wipe.
		eval[any](t, ctx, `window.notReloaded = true`)
		const ns, name = teamA, "alpha-02"
		state := fmt.Sprintf(`((s) => s[%s])(%s)`, mustJSON(ns+"/"+name), jsStates)
		b.waitValue(t, ctx, "running before", state, "running")

		began := time.Now()
		e.setMode(t, ns, name, "Suspended")
		b.waitValue(t, ctx, "suspended on the open page", state, "suspended")
		t.Logf("suspension shown %v after the patch", time.Since(began).Round(time.Millisecond))
		began = time.Now()
		e.setMode(t, ns, name, "Running")
		b.waitValue(t, ctx, "running again on the open page", state, "running")
		t.Logf("resumption shown %v after the patch", time.Since(began).Round(time.Millisecond))
		b.waitValue(t, ctx, "no reload", `window.notReloaded === true`, true)
		// The overview, open, follows too.
		b.open(t, ctx, base)
		b.waitValue(t, ctx, "overview running", `document.querySelector('.count[data-state="running"]').textContent`, fmt.Sprint(running))
		eval[any](t, ctx, `window.notReloaded = true`)
		e.setMode(t, ns, name, "Suspended")
		b.waitValue(t, ctx, "overview suspended count", `document.querySelector('.count[data-state="suspended"]').textContent`, fmt.Sprint(suspA+suspB+1))
		e.setMode(t, ns, name, "Running")
		b.waitValue(t, ctx, "overview running count", `document.querySelector('.count[data-state="running"]').textContent`, fmt.Sprint(running))
		b.waitValue(t, ctx, "overview not reloaded", `window.notReloaded === true`, true)
		e.waitState(t, ns, name, resolver.StateRunning)
	})

	t.Run("sandbox", func(t *testing.T) {
		ctx := b.step(t)
		const ns, name = teamA, "alpha-01"
		uid := e.uid(t, ns, name)
		b.open(t, ctx, base+"sandbox?namespace="+ns+"&name="+name)
		b.waitValue(t, ctx, "title", `document.getElementById('title').textContent`, ns+"/"+name)
		b.waitValue(t, ctx, "state and uid", `((f) => [f['State'], f['UID']])(`+jsFacts+`)`, []string{"running", uid})
		b.waitValue(t, ctx, "curl example", `document.getElementById('curl').textContent`,
			"curl -H 'X-Sandbox-ID: "+name+"' -H 'X-Sandbox-Namespace: "+ns+"' "+routerURL+"/")
		podIP := eval[string](t, ctx, `((f) => f['Pod address'])(`+jsFacts+`)`)
		if !strings.HasPrefix(podIP, "127.10.") {
			t.Errorf("pod address %q, want one of the sim's (127.10.x.x)", podIP)
		}
		// It follows a suspension too.
		e.setMode(t, ns, name, "Suspended")
		b.waitValue(t, ctx, "suspended on the sandbox page", `((f) => f['State'])(`+jsFacts+`)`, "suspended")
		e.setMode(t, ns, name, "Running")
		b.waitValue(t, ctx, "running again on the sandbox page", `((f) => f['State'])(`+jsFacts+`)`, "running")
	})

	t.Run("viewer", func(t *testing.T) {
		hidden := e.serve(t, func(*http.Request) (dashboard.Viewer, error) { return hideNamespace(teamB), nil })
		ctx := b.step(t)
		visible := keys(e.sbs, func(s sandbox) bool { return s.ns != teamB })
		b.open(t, ctx, hidden)
		b.waitValue(t, ctx, "counts without team-b", jsCounts, counts(nA-suspA, suspA))
		b.waitValue(t, ctx, "total without team-b", `document.getElementById('total').textContent`, fmt.Sprintf("(%d in all)", nA))
		b.waitValue(t, ctx, "one namespace", `document.getElementById('namespaces').textContent`, "1")
		noTeamB := `!document.body.innerText.includes('team-b') && !document.body.innerText.includes('beta-')`
		b.waitValue(t, ctx, "team-b nowhere on the overview", noTeamB, true)

		b.open(t, ctx, hidden+"sandboxes")
		b.waitValue(t, ctx, "rows without team-b", jsRows, visible)
		b.waitValue(t, ctx, "team-b nowhere in the table", noTeamB, true)
		eval[any](t, ctx, setField("namespace", teamB))
		b.waitValue(t, ctx, "namespace team-b filtered", jsRows, []string{})
		b.waitValue(t, ctx, "nothing matches", `document.getElementById('summary').textContent`, "Nothing matches.")
		eval[any](t, ctx, setField("namespace", ""))
		b.run(t, ctx, "search beta", chromedp.Focus(chromedp.CSS("#q")), chromedp.SendKeys(chromedp.CSS("#q"), "beta"))
		b.waitValue(t, ctx, "search beta finds nothing", jsRows, []string{})
		// A change in team-b sends nothing to this page: the counts and rows
		// stay as they were while team-a's change shows.
		e.setMode(t, teamB, "beta-00", "Suspended")
		e.setMode(t, teamA, "alpha-00", "Suspended")
		eval[any](t, ctx, setField("q", ""))
		b.waitValue(t, ctx, "alpha-00 suspended", fmt.Sprintf(`((s) => s[%s])(%s)`, mustJSON(teamA+"/alpha-00"), jsStates), "suspended")
		b.waitValue(t, ctx, "still no team-b", jsRows, visible)

		// The one-sandbox page of a hidden sandbox shows nothing of it.
		uid := e.uid(t, teamB, "beta-01")
		b.open(t, ctx, hidden+"sandbox?namespace="+teamB+"&name=beta-01")
		b.waitValue(t, ctx, "an error shown", `!document.getElementById('error').hidden && document.getElementById('error').textContent !== ''`, true)
		b.waitValue(t, ctx, "no details", `document.getElementById('details').textContent + document.getElementById('curl').textContent`, "")
		html := eval[string](t, ctx, `document.documentElement.outerHTML`)
		if strings.Contains(html, uid) {
			t.Errorf("the hidden sandbox's uid %s is on the page", uid)
		}
		// The API answers alike.
		for _, path := range []string{"api/overview", "api/sandboxes?kind=all&size=200", "api/sandboxes?namespace=team-b", "api/sandboxes/team-b/beta-01"} {
			code, s := apiGet(t, hidden+path, "")
			if strings.Contains(s, "team-b") || strings.Contains(s, "beta-") || strings.Contains(s, uid) {
				t.Errorf("GET %s (%d) shows team-b: %s", path, code, s)
			}
		}
		e.setMode(t, teamB, "beta-00", "Running")
		e.setMode(t, teamA, "alpha-00", "Running")
	})
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}
