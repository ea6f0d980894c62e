package dashboard

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// fixture: three namespaces, one of them hidden from the viewer in some
// tests, and two warm-pool pods.
func fixture() *fakeResolver {
	fr := newFakeResolver()
	fr.set(running("alpha", "web-1", "u-a1", "10.0.0.1"))
	fr.set(inState(resolver.StateSuspended, "alpha", "web-2", "u-a2"))
	fr.set(inState(resolver.StateStarting, "alpha", "db", "u-a3"))
	fr.set(running("beta", "web-3", "u-b1", "10.0.1.1"))
	fr.set(inState(resolver.StateSuspended, "beta", "cache", "u-b2"))
	fr.set(running("secret", "web-4", "u-s1", "10.0.2.1"))
	fr.setWarm(running("alpha", "pool-aaa", "u-p1", "10.0.3.1"))
	fr.setWarm(inState(resolver.StateStarting, "alpha", "pool-bbb", "u-p2"))
	return fr
}

func get(t *testing.T, h http.Handler, path string, out any) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if out != nil && rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s: %v in %s", path, err, rec.Body)
		}
	}
	return rec
}

func rowNames(rows []Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Namespace + "/" + r.Name
	}
	return out
}

func TestTableQueries(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture()})
	for _, tc := range []struct {
		query string
		want  []string
		total int
	}{
		{"", []string{"alpha/db", "alpha/web-1", "alpha/web-2", "beta/cache", "beta/web-3", "secret/web-4"}, 6},
		{"?order=desc", []string{"secret/web-4", "beta/web-3", "beta/cache", "alpha/web-2", "alpha/web-1", "alpha/db"}, 6},
		{"?q=WEB", []string{"alpha/web-1", "alpha/web-2", "beta/web-3", "secret/web-4"}, 4},
		{"?q=ha/we", []string{"alpha/web-1", "alpha/web-2"}, 2},
		{"?q=bet", []string{"beta/cache", "beta/web-3"}, 2},
		{"?namespace=alpha&state=suspended", []string{"alpha/web-2"}, 1},
		{"?sort=name", []string{"beta/cache", "alpha/db", "alpha/web-1", "alpha/web-2", "beta/web-3", "secret/web-4"}, 6},
		{"?sort=state", []string{"alpha/web-1", "beta/web-3", "secret/web-4", "alpha/db", "alpha/web-2", "beta/cache"}, 6},
		{"?sort=state&order=desc&size=2", []string{"beta/cache", "alpha/web-2"}, 6},
		{"?size=4&page=2", []string{"beta/web-3", "secret/web-4"}, 6},
		{"?size=4&page=9", []string{}, 6},
		{"?kind=warm-pool-pod", []string{"alpha/pool-aaa", "alpha/pool-bbb"}, 2},
		{"?kind=all&namespace=alpha", []string{"alpha/db", "alpha/pool-aaa", "alpha/pool-bbb", "alpha/web-1", "alpha/web-2"}, 5},
	} {
		var ans tableAnswer
		if rec := get(t, h, "/api/sandboxes"+tc.query, &ans); rec.Code != http.StatusOK {
			t.Errorf("%s: %d %s", tc.query, rec.Code, rec.Body)
			continue
		}
		if got := rowNames(ans.Rows); !slices.Equal(got, tc.want) || ans.Total != tc.total {
			t.Errorf("%s: rows %v total %d, want %v total %d", tc.query, got, ans.Total, tc.want, tc.total)
		}
	}

	// Counts are over every filter but the state one.
	var ans tableAnswer
	get(t, h, "/api/sandboxes?namespace=alpha&state=running", &ans)
	want := map[string]int{"running": 1, "starting": 1, "suspending": 0, "suspended": 1, "finished": 0}
	if !mapsEqual(ans.Counts, want) {
		t.Errorf("counts %v, want %v", ans.Counts, want)
	}
	// Rows carry what the table shows.
	if r := ans.Rows[0]; r.PodIP != "10.0.0.1" || r.UID != "u-a1" || r.Kind != kindSandbox || r.State != "running" {
		t.Errorf("row %+v", r)
	}
	ans = tableAnswer{}
	get(t, h, "/api/sandboxes?kind=warm-pool-pod&state=running", &ans)
	if len(ans.Rows) != 1 || ans.Rows[0].Kind != kindWarm || ans.Rows[0].UID != "u-p1" {
		t.Errorf("warm rows %+v", ans.Rows)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestTableRefusesBadQueries(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture()})
	for _, q := range []string{"state=unknown", "state=asleep", "sort=uid", "order=up", "page=0", "size=0", "size=x", "namespace=Not_A_Label", "kind=pods", "q=" + strings.Repeat("a", 300)} {
		rec := get(t, h, "/api/sandboxes?"+q, nil)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"detail"`) {
			t.Errorf("%s: %d %s", q, rec.Code, rec.Body)
		}
	}
	var ans tableAnswer
	get(t, h, "/api/sandboxes?size=5000", &ans)
	if ans.Size != maxPageSize {
		t.Errorf("size %d, want the maximum %d", ans.Size, maxPageSize)
	}
}

func TestTableActivityAndTimeLeft(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	fr := fixture()
	fr.setLifecycle("alpha", "web-1", resolver.Lifecycle{LastActivity: now.Add(-4 * time.Minute)})
	fr.setLifecycle("beta", "web-3", resolver.Lifecycle{IdleTimeout: time.Minute, IdleTimeoutSet: true, LastActivity: now.Add(-time.Hour)})
	act := newFakeActivity(10 * time.Minute)
	act.last[key("beta", "web-3")] = now.Add(-20 * time.Second) // newer here than the annotation
	act.last[key("secret", "web-4")] = now.Add(-time.Second)
	act.inFlight[key("secret", "web-4")] = 2
	act.held[key("alpha", "web-2")] = 7
	h := start(t, Options{Sandboxes: fr, Activity: act, Now: func() time.Time { return now }})

	var ans tableAnswer
	get(t, h, "/api/sandboxes?sort=lastActivity&order=desc&size=3", &ans)
	if got, want := rowNames(ans.Rows), []string{"secret/web-4", "beta/web-3", "alpha/web-1"}; !slices.Equal(got, want) {
		t.Fatalf("by last activity %v, want %v", got, want)
	}
	byName := map[string]Row{}
	ans = tableAnswer{}
	get(t, h, "/api/sandboxes", &ans)
	for _, r := range ans.Rows {
		byName[r.Name] = r
	}
	secs := func(p *int64) int64 {
		if p == nil {
			return -1
		}
		return *p
	}
	for _, tc := range []struct {
		name              string
		idle, left, open  int64
		held              int
		last              time.Time
		wantLeftIsUnknown bool
	}{
		{name: "web-1", idle: 600, left: 360, last: now.Add(-4 * time.Minute)},
		{name: "web-3", idle: 60, left: 40, last: now.Add(-20 * time.Second)},
		{name: "web-4", idle: 600, left: 600, open: 2, last: now.Add(-time.Second)}, // busy: the whole timeout
		{name: "web-2", idle: 600, left: -1, held: 7},                               // suspended: nothing left to count
	} {
		r := byName[tc.name]
		if secs(r.IdleTimeoutSeconds) != tc.idle || secs(r.IdleLeftSeconds) != tc.left || secs(r.OpenRequests) != tc.open || r.HeldRequests == nil || *r.HeldRequests != tc.held || !r.LastActivity.Equal(tc.last) {
			t.Errorf("%s: idle %d left %d open %d held %v last %v", tc.name, secs(r.IdleTimeoutSeconds), secs(r.IdleLeftSeconds), secs(r.OpenRequests), r.HeldRequests, r.LastActivity)
		}
	}

	// Without the activator only annotations are known.
	h2 := start(t, Options{Sandboxes: fr, Now: func() time.Time { return now }})
	ans = tableAnswer{}
	get(t, h2, "/api/sandboxes?namespace=beta", &ans)
	for _, r := range ans.Rows {
		if r.OpenRequests != nil || r.HeldRequests != nil {
			t.Errorf("%s: request counts without an activator", r.Name)
		}
		if r.Name == "web-3" && (secs(r.IdleTimeoutSeconds) != 60 || secs(r.IdleLeftSeconds) != 0) {
			t.Errorf("web-3 from its annotation: idle %d left %d", secs(r.IdleTimeoutSeconds), secs(r.IdleLeftSeconds))
		}
		if r.Name == "cache" && r.IdleTimeoutSeconds != nil {
			t.Errorf("cache: an idle timeout nobody set")
		}
	}
}

// TestViewerHidesANamespace: a namespace the viewer may not list is absent
// from every answer: rows, totals, counts, the overview and the
// one-sandbox view.
func TestViewerHidesANamespace(t *testing.T) {
	act := newFakeActivity(0)
	act.held[key("secret", "web-4")] = 3
	act.held[key("alpha", "web-2")] = 1
	h := start(t, Options{
		Sandboxes: fixture(),
		Activity:  act,
		Viewer:    func(*http.Request) (Viewer, error) { return hiding("secret"), nil },
	})
	for _, q := range []string{"", "?q=web", "?sort=name", "?sort=state&order=desc", "?sort=lastActivity", "?kind=all"} {
		rec := get(t, h, "/api/sandboxes"+q, nil)
		if strings.Contains(rec.Body.String(), "secret") || strings.Contains(rec.Body.String(), "u-s1") {
			t.Errorf("%s shows the hidden namespace: %s", q, rec.Body)
		}
	}
	var ans tableAnswer
	get(t, h, "/api/sandboxes?q=web", &ans)
	if ans.Total != 3 || ans.Counts["running"] != 2 {
		t.Errorf("total %d counts %v: the hidden namespace is counted", ans.Total, ans.Counts)
	}
	var o overview
	rec := get(t, h, "/api/overview", &o)
	if o.Sandboxes != 5 || o.Namespaces != 2 || o.HeldRequests == nil || *o.HeldRequests != 1 || strings.Contains(rec.Body.String(), "secret") {
		t.Errorf("overview counts the hidden namespace: %s", rec.Body)
	}
	if rec := get(t, h, "/api/sandboxes/secret/web-4", nil); rec.Code != http.StatusNotFound {
		t.Errorf("one hidden sandbox: %d, want 404 like a missing one", rec.Code)
	}
}

func TestViewerErrors(t *testing.T) {
	for _, tc := range []struct {
		viewer func(*http.Request) (Viewer, error)
		code   int
	}{
		{func(*http.Request) (Viewer, error) { return nil, http.ErrNoCookie }, http.StatusUnauthorized},
		{func(*http.Request) (Viewer, error) { return nil, ErrForbidden }, http.StatusForbidden},
		{func(*http.Request) (Viewer, error) { return nil, nil }, http.StatusForbidden},
	} {
		h := start(t, Options{Sandboxes: fixture(), Viewer: tc.viewer})
		for _, p := range []string{"/api/sandboxes", "/api/overview", "/api/sandboxes/alpha/web-1", "/api/events"} {
			if rec := get(t, h, p, nil); rec.Code != tc.code {
				t.Errorf("%s: %d, want %d", p, rec.Code, tc.code)
			}
		}
	}
}

func TestNotReadyBeforeRun(t *testing.T) {
	h, err := New(Options{Sandboxes: fixture()})
	if err != nil {
		t.Fatal(err)
	}
	if rec := get(t, h, "/api/sandboxes", nil); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("before Run: %d", rec.Code)
	}
}
