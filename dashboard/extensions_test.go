package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// fakeExtensions is the extensions catalog with a coalescing change
// signal like dashboard/kube's.
type fakeExtensions struct {
	mu        sync.Mutex
	templates []Template
	pools     []WarmPool
	claims    []Claim
	kinds     []KindStatus
	changes   chan struct{}
}

func newFakeExtensions() *fakeExtensions {
	f := &fakeExtensions{changes: make(chan struct{}, 1)}
	for _, k := range []struct {
		kind Kind
		res  string
	}{{KindTemplate, "sandboxtemplates"}, {KindWarmPool, "sandboxwarmpools"}, {KindClaim, "sandboxclaims"}} {
		f.kinds = append(f.kinds, KindStatus{Kind: k.kind, Resource: k.res, Version: "v1beta1", Synced: true})
	}
	return f
}

func inNamespace[T any](all []T, ns string, of func(*T) string) []T {
	var out []T
	for i := range all {
		if ns == "" || of(&all[i]) == ns {
			out = append(out, all[i])
		}
	}
	return out
}

func (f *fakeExtensions) Templates(ns string) []Template {
	f.mu.Lock()
	defer f.mu.Unlock()
	return inNamespace(f.templates, ns, func(t *Template) string { return t.Namespace })
}

func (f *fakeExtensions) WarmPools(ns string) []WarmPool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return inNamespace(f.pools, ns, func(p *WarmPool) string { return p.Namespace })
}

func (f *fakeExtensions) Claims(ns string) []Claim {
	f.mu.Lock()
	defer f.mu.Unlock()
	return inNamespace(f.claims, ns, func(c *Claim) string { return c.Namespace })
}

func (f *fakeExtensions) Changes() <-chan struct{} { return f.changes }

func (f *fakeExtensions) Kinds() []KindStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.kinds)
}

// change runs edit under the lock and signals, as the catalog does.
func (f *fakeExtensions) change(edit func(f *fakeExtensions)) {
	f.mu.Lock()
	edit(f)
	f.mu.Unlock()
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

// extFixture: pools, templates and claims in alpha, beta and gamma, sorted
// by namespace and name as the catalog lists them.
func extFixture() *fakeExtensions {
	f := newFakeExtensions()
	for _, ns := range []string{"alpha", "beta", "gamma"} {
		f.templates = append(f.templates, Template{Namespace: ns, Name: "python", Containers: []Container{
			{Name: "runtime", Image: "registry.example/python:3.13", Ports: []Port{{Name: "http", Number: 8888, Protocol: "TCP"}}},
		}})
		for i := range 3 {
			f.pools = append(f.pools, WarmPool{Namespace: ns, Name: fmt.Sprintf("pool-%d", i), Template: "python", Desired: 5, Replicas: int32(2 + i), Ready: int32(i)})
		}
		f.claims = append(f.claims,
			Claim{Namespace: ns, Name: "claim-a", WarmPool: "pool-0", Template: "python", Sandbox: "web", Ready: true},
			Claim{Namespace: ns, Name: "claim-b", WarmPool: "pool-1", Reason: "Pending"})
	}
	return f
}

// getAs is get as a viewer who may not list namespace hide ("" sees all).
func getAs(t *testing.T, h http.Handler, path, hide string, out any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("X-Hide", hide)
	h.ServeHTTP(rec, req)
	if rec.Code == http.StatusOK && out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s: %v in %s", path, err, rec.Body)
		}
	}
	return rec.Code
}

func poolNames(items []warmPoolRow) []string {
	out := make([]string, len(items))
	for i, p := range items {
		out[i] = p.Namespace + "/" + p.Name
	}
	return out
}

func TestExtensionListsFilterPageAndHide(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture(), Extensions: extFixture(), Viewer: headerViewer})
	for _, tc := range []struct {
		path, hide string
		total      int
		want       []string
	}{
		{"/api/warmpools", "", 9, []string{"alpha/pool-0", "alpha/pool-1", "alpha/pool-2", "beta/pool-0", "beta/pool-1", "beta/pool-2", "gamma/pool-0", "gamma/pool-1", "gamma/pool-2"}},
		{"/api/warmpools?namespace=beta", "", 3, []string{"beta/pool-0", "beta/pool-1", "beta/pool-2"}},
		{"/api/warmpools?q=POOL-1", "", 3, []string{"alpha/pool-1", "beta/pool-1", "gamma/pool-1"}},
		{"/api/warmpools?q=ta/pool-2", "", 1, []string{"beta/pool-2"}},
		{"/api/warmpools?size=2&page=2", "", 9, []string{"alpha/pool-2", "beta/pool-0"}},
		{"/api/warmpools?size=4&page=9", "", 9, []string{}},
		{"/api/warmpools", "beta", 6, []string{"alpha/pool-0", "alpha/pool-1", "alpha/pool-2", "gamma/pool-0", "gamma/pool-1", "gamma/pool-2"}},
		{"/api/warmpools?namespace=beta", "beta", 0, []string{}},
		{"/api/warmpools?size=2&page=2", "alpha", 6, []string{"beta/pool-2", "gamma/pool-0"}},
	} {
		var a listAnswer[warmPoolRow]
		if code := getAs(t, h, tc.path, tc.hide, &a); code != http.StatusOK {
			t.Fatalf("%s: %d", tc.path, code)
		}
		if got := poolNames(a.Items); a.Total != tc.total || !slices.Equal(got, tc.want) || !a.Watched || a.Kind == nil || !a.Kind.Synced {
			t.Errorf("%s hiding %q: total %d %v %+v, want %d %v", tc.path, tc.hide, a.Total, got, a.Kind, tc.total, tc.want)
		}
	}
	var a listAnswer[warmPoolRow]
	getAs(t, h, "/api/warmpools?namespace=alpha&q=pool-2", "", &a)
	if len(a.Items) != 1 || a.Items[0] != (warmPoolRow{Namespace: "alpha", Name: "pool-2", Template: "python", Desired: 5, Ready: 2, Unclaimed: 4, Shortfall: 3}) {
		t.Errorf("pool row %+v", a.Items)
	}

	var tm listAnswer[templateRow]
	getAs(t, h, "/api/templates", "gamma", &tm)
	if tm.Total != 2 || len(tm.Items) != 2 || tm.Items[1].Namespace != "beta" || tm.Items[0].Containers[0].Image != "registry.example/python:3.13" ||
		tm.Items[0].Containers[0].Ports[0] != (portRow{Name: "http", Number: 8888, Protocol: "TCP"}) {
		t.Errorf("templates %+v", tm)
	}

	var cl listAnswer[claimRow]
	getAs(t, h, "/api/claims?namespace=alpha", "", &cl)
	if cl.Total != 2 || cl.Items[0].Phase != "ready" || cl.Items[0].Sandbox != "web" || cl.Items[1].Phase != "pending" || cl.Items[1].Reason != "Pending" {
		t.Errorf("claims %+v", cl)
	}
	getAs(t, h, "/api/claims", "alpha", &cl)
	for _, c := range cl.Items {
		if c.Namespace == "alpha" {
			t.Errorf("claim of a hidden namespace: %+v", c)
		}
	}
}

func TestClaimShowsItsSandboxState(t *testing.T) {
	fr := newFakeResolver()
	fr.set(inState(resolver.StateSuspended, "alpha", "web", "u1"))
	ext := newFakeExtensions()
	ext.claims = []Claim{{Namespace: "alpha", Name: "c", Sandbox: "web", Deleting: true, Expires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}}
	h := start(t, Options{Sandboxes: fr, Extensions: ext})
	var cl listAnswer[claimRow]
	getAs(t, h, "/api/claims", "", &cl)
	if len(cl.Items) != 1 || cl.Items[0].SandboxState != "suspended" || cl.Items[0].Phase != "deleting" || cl.Items[0].Expires == nil {
		t.Errorf("claim %+v", cl.Items)
	}
}

func TestExtensionListsRefuseBadQueries(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture(), Extensions: extFixture()})
	for _, api := range []string{"warmpools", "templates", "claims"} {
		for _, q := range []string{
			"namespace=Not_A_Namespace", "namespace=" + strings.Repeat("a", 64), "q=" + strings.Repeat("x", 254),
			"page=0", "page=-1", "page=two", "size=0", "size=1e3",
		} {
			rec := get(t, h, "/api/"+api+"?"+q, nil)
			var e struct{ Detail, Code string }
			if rec.Code != http.StatusBadRequest || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code != "bad_query" || e.Detail == "" {
				t.Errorf("%s?%s: %d %s", api, q, rec.Code, rec.Body)
			}
		}
		var a listAnswer[json.RawMessage]
		if code := getAs(t, h, "/api/"+api+"?size=100000", "", &a); code != http.StatusOK || a.Size != maxPageSize {
			t.Errorf("%s: size not capped: %d %d", api, code, a.Size)
		}
	}
}

func TestExtensionsNotWatched(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture()})
	for _, api := range []string{"warmpools", "templates", "claims"} {
		var a listAnswer[json.RawMessage]
		if code := getAs(t, h, "/api/"+api, "", &a); code != http.StatusOK || a.Watched || a.Kind != nil || a.Items == nil || len(a.Items) != 0 {
			t.Errorf("%s without extensions: %d %+v", api, code, a)
		}
	}
	var k kindsAnswer
	getAs(t, h, "/api/kinds", "", &k)
	if k.Watched || len(k.Kinds) != 0 {
		t.Errorf("kinds %+v", k)
	}
	var o overview
	getAs(t, h, "/api/overview", "", &o)
	if o.Pools.Watched || o.Pools.Pools != 0 || o.WarmPool.Pods != 2 {
		t.Errorf("overview %+v", o)
	}
}

func TestKindStatusSaysForbiddenNotEmpty(t *testing.T) {
	ext := extFixture()
	ext.kinds[1].Synced = false
	ext.kinds[1].Error = `namespace secret: sandboxwarmpools.extensions.agents.x-k8s.io is forbidden: User "system:serviceaccount:x:y" cannot list resource`
	ext.kinds[2].Version, ext.kinds[2].Synced = "", false
	h := start(t, Options{Sandboxes: fixture(), Extensions: ext, Viewer: headerViewer})

	// Without a Viewer (everyone sees everything) the message is whole.
	var k kindsAnswer
	getAs(t, start(t, Options{Sandboxes: fixture(), Extensions: ext}), "/api/kinds", "", &k)
	if !k.Watched || len(k.Kinds) != 3 || !k.Kinds[0].Synced || !k.Kinds[1].Forbidden || k.Kinds[1].Error != ext.kinds[1].Error || k.Kinds[2].Served {
		t.Errorf("kinds %+v", k)
	}
	// A viewer who does not see every namespace gets the gist, not the
	// namespace the message names.
	var a listAnswer[warmPoolRow]
	getAs(t, h, "/api/warmpools", "beta", &a)
	if a.Kind == nil || !a.Kind.Forbidden || a.Kind.Synced || strings.Contains(a.Kind.Error, "secret") || !strings.Contains(a.Kind.Error, "RBAC") {
		t.Errorf("kind status for a restricted viewer %+v", a.Kind)
	}
	var c listAnswer[claimRow]
	getAs(t, h, "/api/claims", "", &c)
	if c.Kind == nil || c.Kind.Served || c.Kind.Error != "" {
		t.Errorf("unserved kind %+v", c.Kind)
	}
}

func TestOverviewPoolFill(t *testing.T) {
	ext := newFakeExtensions()
	for i := range 15 {
		ext.pools = append(ext.pools, WarmPool{Namespace: "alpha", Name: fmt.Sprintf("p%02d", i), Desired: int32(i + 1), Ready: 1, Replicas: 2})
	}
	ext.pools = append(ext.pools, WarmPool{Namespace: "beta", Name: "big", Desired: 100, Ready: 0, Replicas: 0})
	h := start(t, Options{Sandboxes: fixture(), Extensions: ext, Viewer: headerViewer})

	var o overview
	getAs(t, h, "/api/overview", "", &o)
	f := o.Pools
	if !f.Watched || f.Pools != 16 || f.Desired != 120+100 || f.Ready != 15 || f.Unclaimed != 30 || len(f.Short) != maxShortPools {
		t.Fatalf("fill %+v", f)
	}
	want := []string{"beta/big", "alpha/p14", "alpha/p13", "alpha/p12", "alpha/p11", "alpha/p10", "alpha/p09", "alpha/p08", "alpha/p07", "alpha/p06"}
	if got := poolNames(f.Short); !slices.Equal(got, want) {
		t.Errorf("short pools %v, want %v", got, want)
	}
	getAs(t, h, "/api/overview", "beta", &o)
	if o.Pools.Pools != 15 || o.Pools.Desired != 120 || o.Pools.Short[0].Name != "p14" {
		t.Errorf("fill hiding beta %+v", o.Pools)
	}
}

// extStream reads an event stream as a page of the extensions views does:
// it counts the "extensions" pings and keeps their data.
type extStream struct {
	mu    sync.Mutex
	hello bool
	pings []string
}

func dialExt(t *testing.T, base, hide string) *extStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/events", nil)
	req.Header.Set("X-Hide", hide)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &extStream{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var event string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				s.mu.Lock()
				switch event {
				case "hello":
					s.hello = true
				case "extensions":
					s.pings = append(s.pings, strings.TrimPrefix(line, "data: "))
				}
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "hello", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.hello })
	return s
}

func (s *extStream) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pings)
}

// TestExtensionsPing: a change of the catalog reaches every open stream as
// an "extensions" event that names nothing, and a burst of changes is
// coalesced (the stream sends at most one message per interval).
func TestExtensionsPing(t *testing.T) {
	ext := extFixture()
	h := start(t, Options{Sandboxes: fixture(), Extensions: ext, Viewer: headerViewer, UpdateInterval: 50 * time.Millisecond})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	all, hiding := dialExt(t, srv.URL, ""), dialExt(t, srv.URL, "beta")

	ext.change(func(f *fakeExtensions) { f.pools[3].Ready = 5 }) // beta/pool-0
	eventually(t, "a ping on both streams", func() bool { return all.count() == 1 && hiding.count() == 1 })
	for _, s := range []*extStream{all, hiding} {
		s.mu.Lock()
		if s.pings[0] != "{}" {
			t.Errorf("the ping carries %q", s.pings[0])
		}
		s.mu.Unlock()
	}
	// A burst: the signal is one buffered slot, the stream one flag, so
	// however many changes there are, far fewer pings follow.
	for i := range 200 {
		ext.change(func(f *fakeExtensions) { f.pools[0].Ready = int32(i % 5) })
	}
	eventually(t, "a ping after the burst", func() bool { return all.count() >= 2 })
	if n := all.count(); n > 100 {
		t.Errorf("%d pings for a burst of 200 changes", n)
	}
	if got := h.hub.size(); got != 2 {
		t.Errorf("%d clients", got)
	}
}

func FuzzParseExtQuery(f *testing.F) {
	for _, s := range []string{"", "q=a&namespace=b&page=2&size=10", "page=0", "size=1e9", "namespace=A", "q=%ff%00", "page=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseExtQuery(v)
		if err != nil {
			return
		}
		if q.page < 1 || q.page > 1<<20 || q.size < 1 || q.size > maxPageSize || len(q.search) > 253 ||
			(q.namespace != "" && !resolver.IsDNSLabel(q.namespace)) || q.search != strings.ToLower(q.search) {
			t.Fatalf("%q parsed to %+v", raw, q)
		}
	})
}
