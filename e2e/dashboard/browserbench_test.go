package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sandbox-router/sandbox-router/dashboard"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// The browser's side of the dashboard at 10,000 sandboxes: how long the
// table's first page takes to show, and how many messages the live stream
// sends while 100 sandboxes change state per second. No API server: the
// resolver is an in-memory one (memSandboxes), so the figures are the
// dashboard's and the browser's alone.

const benchSandboxes = 10000

// memSandboxes is an in-memory resolver for the browser benchmark: n
// sandboxes in 100 namespaces, and a feed of the keys set changes.
type memSandboxes struct {
	mu    sync.Mutex
	byKey map[[2]string]resolver.Result
	feeds map[*memFeed]struct{}
}

func newMemSandboxes(n int) *memSandboxes {
	m := &memSandboxes{byKey: make(map[[2]string]resolver.Result, n), feeds: make(map[*memFeed]struct{})}
	for i := range n {
		ns, name := fmt.Sprintf("team-%02d", i%100), fmt.Sprintf("sb-%05d", i)
		r := resolver.Result{Namespace: ns, Name: name, UID: fmt.Sprintf("uid-%05d", i), State: resolver.StateRunning,
			PodIP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})}
		if i%5 == 0 {
			r.State, r.PodIP = resolver.StateSuspended, netip.Addr{}
		}
		m.byKey[[2]string{ns, name}] = r
	}
	return m
}

func (m *memSandboxes) Snapshot() []resolver.Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]resolver.Result, 0, len(m.byKey))
	for _, r := range m.byKey {
		out = append(out, r)
	}
	return out
}

func (m *memSandboxes) Lookup(k resolver.Key) resolver.Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byKey[[2]string{k.Namespace, k.Name}]
}

func (m *memSandboxes) Lifecycle(resolver.Key) (resolver.Lifecycle, bool) {
	return resolver.Lifecycle{}, false
}

func (m *memSandboxes) Subscribe() resolver.Feed {
	f := &memFeed{m: m, PendingKeys: resolver.NewPendingKeys()}
	m.mu.Lock()
	m.feeds[f] = struct{}{}
	m.mu.Unlock()
	return f
}

// flip toggles sandbox i between running and suspended.
func (m *memSandboxes) flip(i int) {
	ns, name := fmt.Sprintf("team-%02d", i%100), fmt.Sprintf("sb-%05d", i)
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.byKey[[2]string{ns, name}]
	if r.State == resolver.StateRunning {
		r.State, r.PodIP = resolver.StateSuspended, netip.Addr{}
	} else {
		r.State, r.PodIP = resolver.StateRunning, netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
	}
	m.byKey[[2]string{ns, name}] = r
	for f := range m.feeds {
		f.Add(resolver.Key{Namespace: ns, Name: name})
	}
}

type memFeed struct {
	m *memSandboxes
	*resolver.PendingKeys
}

func (f *memFeed) Close() {
	f.m.mu.Lock()
	delete(f.m.feeds, f)
	f.m.mu.Unlock()
}

// serveHandler serves h on a loopback listener until the test ends; the
// open pages' event streams are closed with it.
func serveHandler(tb testing.TB, h http.Handler) string {
	tb.Helper()
	srv := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	tb.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv.URL + "/"
}

// serveMemDashboard runs a dashboard on m until the test ends.
func serveMemDashboard(tb testing.TB, m *memSandboxes) string {
	tb.Helper()
	base := runDashboard(tb, dashboard.Options{Sandboxes: m, RouterURL: routerURL})
	// It answers 503 until Run has loaded the resolver's snapshot.
	deadline := time.Now().Add(waitTimeout)
	for {
		code, _ := apiGet(tb, base+"api/overview", "")
		if code == http.StatusOK {
			return base
		}
		if time.Now().After(deadline) {
			tb.Fatalf("dashboard not loaded: %d", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveReference serves the table page as the browser's floor: the same
// HTML and style sheet with the first page's rows already in the markup
// and no script, so no API call and no rendering by script.
func serveReference(tb testing.TB, base string) string {
	tb.Helper()
	page := httpGet(tb, base+"sandboxes")
	var first struct {
		Rows []dashboard.Row `json:"rows"`
	}
	if err := json.Unmarshal([]byte(httpGet(tb, base+"api/sandboxes")), &first); err != nil || len(first.Rows) == 0 {
		tb.Fatalf("first page: %v (%d rows)", err, len(first.Rows))
	}
	var rows strings.Builder
	for _, r := range first.Rows {
		fmt.Fprintf(&rows, `<tr><td>%s</td><td><a href="sandbox?namespace=%[1]s&name=%[2]s">%[2]s</a></td><td class="state state-%[3]s">%[3]s</td><td>%s</td><td>—</td><td>—</td><td>—</td><td class="num">—</td><td class="num">—</td></tr>`,
			html.EscapeString(r.Namespace), html.EscapeString(r.Name), html.EscapeString(r.State), html.EscapeString(cmpOr(r.PodIP, "—")))
	}
	const tbody = `<tbody id="rows">`
	i := strings.Index(page, tbody)
	if i < 0 {
		tb.Fatalf("no %s in the table page", tbody)
	}
	page = page[:i+len(tbody)] + rows.String() + page[i+len(tbody):]
	page = strings.Replace(page, `<script src="static/app.js" defer></script>`, "", 1)
	css := httpGet(tb, base+"static/style.css")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sandboxes", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	})
	mux.HandleFunc("GET /static/style.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		io.WriteString(w, css)
	})
	return serveHandler(tb, mux)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func httpGet(tb testing.TB, url string) string {
	tb.Helper()
	code, body := apiGet(tb, url, "")
	if code != http.StatusOK {
		tb.Fatalf("GET %s: %d", url, code)
	}
	return body
}

// instrument runs in every page before its own script: it notes when the
// table first holds pageRows rows (performance.now(): milliseconds since
// the navigation began) and counts the live stream's update messages.
const instrument = `(() => {
  window.__updates = [];
  const add = EventSource.prototype.addEventListener;
  EventSource.prototype.addEventListener = function (type, fn, opts) {
    if (type !== 'update') { return add.call(this, type, fn, opts); }
    return add.call(this, type, function (e) { window.__updates.push(performance.now()); return fn.call(this, e); }, opts);
  };
  const seen = () => {
    const body = document.getElementById('rows');
    if (window.__rowsAt === undefined && body && body.rows.length >= 50) { window.__rowsAt = performance.now(); }
  };
  new MutationObserver(seen).observe(document, {childList: true, subtree: true});
  document.addEventListener('DOMContentLoaded', seen);
})()`

// pageTiming is one load of the table page.
type pageTiming struct {
	Rows float64 // navigation start to the first page's rows in the table, ms
	API  float64 // the api/sandboxes answer's time to first byte, ms (0 for the reference)
}

func (b *browser) loadTable(tb testing.TB, ctx context.Context, url string) pageTiming {
	tb.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		tb.Fatalf("open %s: %v", url, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`window.__rowsAt !== undefined`, chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout))); err != nil {
		tb.Fatalf("%s: rows never shown: %v", url, err)
	}
	t, err := chromedp.Run(ctx, chromedp.Evaluate[pageTiming](`({Rows: window.__rowsAt, API: (performance.getEntriesByType('resource').find(e => e.name.includes('api/sandboxes')) || {}).responseStart - (performance.getEntriesByType('resource').find(e => e.name.includes('api/sandboxes')) || {}).requestStart || 0})`))
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func startInstrumentedBrowser(tb testing.TB) *browser {
	tb.Helper()
	b := startBrowser(tb)
	if _, err := chromedp.Call(b.tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: instrument}); err != nil {
		tb.Fatal(err)
	}
	return b
}

// liveStream changes rate sandboxes a second for d with the table page
// open, and returns the changes made and the update messages the page
// received, with the time between its first and last.
func liveStream(tb testing.TB, ctx context.Context, b *browser, m *memSandboxes, rate int, d time.Duration) (changes int, updates []float64) {
	tb.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(window.__updates = [], true)`)); err != nil {
		tb.Fatal(err)
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.After(d)
	for i := 0; ; i++ {
		select {
		case <-tick.C:
			m.flip(i % benchSandboxes)
			changes++
			continue
		case <-end:
		}
		break
	}
	// The last change's message, coalesced, follows within an interval.
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`window.__updates.length > 0 && performance.now() - window.__updates[window.__updates.length-1] > 600`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout))); err != nil {
		tb.Fatalf("no update messages: %v", err)
	}
	updates, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`window.__updates`))
	if err != nil {
		tb.Fatal(err)
	}
	return changes, updates
}

func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkBrowserTable loads the table's first page at 10,000 sandboxes
// in headless Chromium, rounds interleaved with the reference page, and
// then streams 100 changes a second for 10 s to the open page (make
// bench; -benchtime 1x).
func BenchmarkBrowserTable(b *testing.B) {
	if os.Getenv(skipBrowserEnv) == "1" {
		b.Skip("browser benchmarks skipped")
	}
	m := newMemSandboxes(benchSandboxes)
	base := serveMemDashboard(b, m)
	ref := serveReference(b, base)
	br := startInstrumentedBrowser(b)
	ctx, cancel := context.WithTimeout(br.tab, 10*time.Minute)
	defer cancel()
	const rounds = 30
	var rows, api, refRows []float64
	b.ResetTimer()
	for range b.N {
		// A first load of each warms the browser's cache of the script
		// and style sheet, as for an operator who keeps the page open.
		br.loadTable(b, ctx, base+"sandboxes")
		br.loadTable(b, ctx, ref+"sandboxes")
		for range rounds {
			t := br.loadTable(b, ctx, base+"sandboxes")
			rows, api = append(rows, t.Rows), append(api, t.API)
			refRows = append(refRows, br.loadTable(b, ctx, ref+"sandboxes").Rows)
		}
	}
	br.loadTable(b, ctx, base+"sandboxes")
	changes, updates := liveStream(b, ctx, br, m, 100, 10*time.Second)
	b.StopTimer()
	span := updates[len(updates)-1] - updates[0]
	fmt.Printf("browser table at %d sandboxes, %d rounds (ms, p50 / p90 / max):\n", benchSandboxes, rounds*b.N)
	fmt.Printf("  dashboard   first page shown %6.1f / %6.1f / %6.1f   (api/sandboxes TTFB %4.1f / %4.1f)\n",
		percentile(rows, .5), percentile(rows, .9), slices.Max(rows), percentile(api, .5), percentile(api, .9))
	fmt.Printf("  reference   rows in the HTML  %6.1f / %6.1f / %6.1f\n", percentile(refRows, .5), percentile(refRows, .9), slices.Max(refRows))
	fmt.Printf("  ratio p50   %.2fx\n", percentile(rows, .5)/percentile(refRows, .5))
	fmt.Printf("live stream: %d changes in 10 s -> %d update messages over %.1f s (%.1f/s)\n", changes, len(updates), span/1000, float64(len(updates))/(span/1000))
	b.ReportMetric(percentile(rows, .5), "ms-first-page-p50")
	b.ReportMetric(percentile(refRows, .5), "ms-reference-p50")
	b.ReportMetric(float64(len(updates))/(span/1000), "updates/s")
}

// TestBrowserTableSmoke is the benchmark's smoke run in make test: one
// load at 10,000 sandboxes shows 50 rows, and a second of 100 changes a
// second reaches the page coalesced: at most one message per update
// interval (250 ms) between the first and the last.
func TestBrowserTableSmoke(t *testing.T) {
	chromium(t)
	m := newMemSandboxes(benchSandboxes)
	base := serveMemDashboard(t, m)
	br := startInstrumentedBrowser(t)
	ctx := br.step(t)
	br.loadTable(t, ctx, base+"sandboxes")
	changes, updates := liveStream(t, ctx, br, m, 100, time.Second)
	span := updates[len(updates)-1] - updates[0]
	if limit := int(span/250) + 2; len(updates) > limit || len(updates) >= changes {
		t.Errorf("%d changes gave %d update messages over %.0f ms: want at most %d (one per 250 ms interval, one more for the network's jitter)", changes, len(updates), span, limit)
	}
	t.Logf("%d changes, %d update messages over %.0f ms", changes, len(updates), span)
}
