package kube

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/sandbox-router/sandbox-router/mcp"
)

// callerToken is a token no error may contain.
const callerToken = "caller-token-3f9c1d0e7a"

func newCluster(t *testing.T, f *fakeAPI, sandboxVersion string) *Cluster {
	t.Helper()
	c, err := New(Options{Config: f.routerConfig(t), SandboxVersion: sandboxVersion, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCallerCredentialsOnly makes every call with a router config that has
// every kind of credential, and checks that the API server saw the
// caller's token and nothing of the router's.
func TestCallerCredentialsOnly(t *testing.T) {
	f := newFakeAPI(t)
	c := newCluster(t, f, "v1beta1")
	ctx := t.Context()
	f.put("sandboxes", "sb", object("Sandbox", "sb", "u1"))
	if err := c.SetSuspended(ctx, callerToken, "team-a", "sb", true); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateClaim(ctx, callerToken, "team-a", "claimed", "python"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListNames(ctx, callerToken, "team-a", "", 10); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, callerToken, "team-a", "sb"); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if len(reqs) < 5 {
		t.Fatalf("%d requests, want at least 5", len(reqs))
	}
	for _, r := range reqs {
		if r.Authorization != "Bearer "+callerToken {
			t.Errorf("%s %s: Authorization %q, want the caller's token only", r.Method, r.Path, r.Authorization)
		}
		if len(r.Impersonation) > 0 || r.Wrapped || r.ClientCerts > 0 {
			t.Errorf("%s %s: router credentials sent: impersonation %v, wrapped %v, %d client certificates",
				r.Method, r.Path, r.Impersonation, r.Wrapped, r.ClientCerts)
		}
	}
}

// TestRequests checks what each call sends, for both Sandbox versions.
func TestRequests(t *testing.T) {
	type want struct{ method, path, contentType, body string }
	for _, tc := range []struct {
		version string
		call    func(*Cluster) error
		want    want
	}{
		{"v1beta1", func(c *Cluster) error { return c.SetSuspended(t.Context(), callerToken, "team-a", "sb", true) },
			want{"PATCH", "/apis/agents.x-k8s.io/v1beta1/namespaces/team-a/sandboxes/sb", "application/merge-patch+json", `{"spec":{"operatingMode":"Suspended"}}`}},
		{"v1beta1", func(c *Cluster) error { return c.SetSuspended(t.Context(), callerToken, "team-a", "sb", false) },
			want{"PATCH", "/apis/agents.x-k8s.io/v1beta1/namespaces/team-a/sandboxes/sb", "application/merge-patch+json", `{"spec":{"operatingMode":"Running"}}`}},
		{"v1alpha1", func(c *Cluster) error { return c.SetSuspended(t.Context(), callerToken, "team-a", "sb", true) },
			want{"PATCH", "/apis/agents.x-k8s.io/v1alpha1/namespaces/team-a/sandboxes/sb", "application/merge-patch+json", `{"spec":{"replicas":0}}`}},
		{"v1alpha1", func(c *Cluster) error { return c.SetSuspended(t.Context(), callerToken, "team-a", "sb", false) },
			want{"PATCH", "/apis/agents.x-k8s.io/v1alpha1/namespaces/team-a/sandboxes/sb", "application/merge-patch+json", `{"spec":{"replicas":1}}`}},
		{"v1alpha1", func(c *Cluster) error {
			return c.CreateClaim(t.Context(), callerToken, "team-a", "mine", "python-runtime")
		},
			want{"POST", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/team-a/sandboxclaims", "application/json",
				`{"apiVersion":"extensions.agents.x-k8s.io/v1beta1","kind":"SandboxClaim","metadata":{"name":"mine","namespace":"team-a"},"spec":{"warmPoolRef":{"name":"python-runtime"}}}`}},
	} {
		f := newFakeAPI(t)
		f.put("sandboxes", "sb", object("Sandbox", "sb", "u1"))
		c := newCluster(t, f, tc.version)
		if err := tc.call(c); err != nil {
			t.Fatalf("%+v: %v", tc.want, err)
		}
		reqs := f.requests()
		if len(reqs) != 1 {
			t.Fatalf("%+v: %d requests", tc.want, len(reqs))
		}
		r := reqs[0]
		got := want{r.Method, r.Path, r.ContentType, strings.TrimSpace(string(r.Body))}
		if !jsonEqual(got.body, tc.want.body) {
			t.Errorf("%s body %s, want %s", tc.version, got.body, tc.want.body)
		}
		got.body = tc.want.body
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.version, got, tc.want)
		}
	}
}

func TestClaimVersionV1alpha1(t *testing.T) {
	f := newFakeAPI(t)
	c, err := New(Options{Config: f.routerConfig(t), SandboxVersion: "v1beta1", ClaimVersion: "v1alpha1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CreateClaim(t.Context(), callerToken, "team-a", "mine", "python"); err != nil {
		t.Fatal(err)
	}
	r := f.requests()[0]
	if r.Path != "/apis/extensions.agents.x-k8s.io/v1alpha1/namespaces/team-a/sandboxclaims" ||
		!jsonEqual(string(r.Body), `{"apiVersion":"extensions.agents.x-k8s.io/v1alpha1","kind":"SandboxClaim","metadata":{"name":"mine","namespace":"team-a"},"spec":{"sandboxTemplateRef":{"name":"python"}}}`) {
		t.Errorf("%s %s", r.Path, r.Body)
	}
}

func TestListNames(t *testing.T) {
	f := newFakeAPI(t)
	c := newCluster(t, f, "v1beta1")
	for _, n := range []string{"a", "b", "c"} {
		f.put("sandboxes", n, object("Sandbox", n, "u-"+n))
	}
	names, err := c.ListNames(t.Context(), callerToken, "team-a", "team=blue", 2)
	if err != nil {
		t.Fatal(err)
	}
	// The fake ignores the selector and the limit; ListNames caps it.
	if len(names) != 2 {
		t.Errorf("names %v, want 2", names)
	}
	r := f.requests()[0]
	q, _ := url.ParseQuery(r.Query)
	if r.Method != "GET" || r.Path != "/apis/agents.x-k8s.io/v1beta1/namespaces/team-a/sandboxes" ||
		q.Get("limit") != "2" || q.Get("labelSelector") != "!"+LabelWarmPool+",team=blue" ||
		!strings.Contains(r.Accept, "as=PartialObjectMetadataList") {
		t.Errorf("list request %+v", r)
	}
	// Default limit, empty selector.
	if _, err := c.ListNames(t.Context(), callerToken, "team-a", "", 0); err != nil {
		t.Fatal(err)
	}
	q, _ = url.ParseQuery(f.requests()[1].Query)
	if q.Get("limit") != "500" || q.Get("labelSelector") != "!"+LabelWarmPool {
		t.Errorf("list query %v", q)
	}
	if _, err := c.ListNames(t.Context(), callerToken, "team-a", "a in (", 0); !errors.Is(err, mcp.ErrInvalid) {
		t.Errorf("bad selector: %v, want ErrInvalid", err)
	}
}

// TestDelete plays each way of Delete against the fake's RBAC.
func TestDelete(t *testing.T) {
	type call struct{ method, resource, name string }
	for _, tc := range []struct {
		name      string
		claims    map[string]map[string]any
		sandboxes map[string]map[string]any
		forbid    []string
		wantErr   error
		wantCalls []call
		gone      []string // resource/name deleted
	}{
		{name: "claim of that name",
			claims:    map[string]map[string]any{"sb": object("SandboxClaim", "sb", "c1")},
			sandboxes: map[string]map[string]any{"sb": object("Sandbox", "sb", "s1", claimOwner("sb", "c1"))},
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"DELETE", "sandboxclaims", "sb"}},
			gone:      []string{"sandboxclaims/sb"}},
		{name: "a claim of that name controls another sandbox",
			claims: map[string]map[string]any{"sb": object("SandboxClaim", "sb", "c1")},
			sandboxes: map[string]map[string]any{"sb": object("Sandbox", "sb", "s1"),
				"pool-x1": object("Sandbox", "pool-x1", "s2", claimOwner("sb", "c1"))},
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"DELETE", "sandboxes", "sb"}},
			gone:      []string{"sandboxes/sb"}},
		{name: "sandbox without claim",
			sandboxes: map[string]map[string]any{"sb": object("Sandbox", "sb", "s1")},
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"DELETE", "sandboxes", "sb"}},
			gone:      []string{"sandboxes/sb"}},
		{name: "sandbox rights only",
			sandboxes: map[string]map[string]any{"sb": object("Sandbox", "sb", "s1")},
			forbid:    []string{"get sandboxclaims", "delete sandboxclaims"},
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"DELETE", "sandboxes", "sb"}},
			gone:      []string{"sandboxes/sb"}},
		{name: "sandbox of a claim the caller may not delete",
			claims:    map[string]map[string]any{"sb": object("SandboxClaim", "sb", "c1")},
			sandboxes: map[string]map[string]any{"sb": object("Sandbox", "sb", "s1", claimOwner("sb", "c1"))},
			forbid:    []string{"get sandboxclaims", "delete sandboxclaims"},
			wantErr:   mcp.ErrForbidden,
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"DELETE", "sandboxclaims", "sb"}}},
		{name: "adopted warm-pool sandbox: its claim has another name",
			claims:    map[string]map[string]any{"mine": object("SandboxClaim", "mine", "c1")},
			sandboxes: map[string]map[string]any{"pool-x7": object("Sandbox", "pool-x7", "s1", claimOwner("mine", "c1"))},
			wantCalls: []call{{"GET", "sandboxes", "pool-x7"}, {"DELETE", "sandboxclaims", "mine"}},
			gone:      []string{"sandboxclaims/mine"}},
		{name: "owner claim gone already",
			sandboxes: map[string]map[string]any{"sb": object("Sandbox", "sb", "s1", claimOwner("sb", "c0"))},
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"DELETE", "sandboxclaims", "sb"}, {"DELETE", "sandboxes", "sb"}},
			gone:      []string{"sandboxes/sb"}},
		{name: "owner claim replaced by a new one of the same name",
			claims:    map[string]map[string]any{"other": object("SandboxClaim", "other", "c2")},
			sandboxes: map[string]map[string]any{"sb": object("Sandbox", "sb", "s1", claimOwner("other", "c1"))},
			wantErr:   mcp.ErrConflict,
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"DELETE", "sandboxclaims", "other"}}},
		{name: "may not get sandboxes: blind delete",
			sandboxes: map[string]map[string]any{"sb": object("Sandbox", "sb", "s1")},
			forbid:    []string{"get sandboxclaims", "get sandboxes"},
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"GET", "sandboxclaims", "sb"}, {"DELETE", "sandboxes", "sb"}},
			gone:      []string{"sandboxes/sb"}},
		{name: "neither",
			wantErr:   mcp.ErrNotFound,
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"GET", "sandboxclaims", "sb"}}},
		{name: "neither, claims not readable",
			forbid:    []string{"get sandboxclaims"},
			wantErr:   mcp.ErrNotFound,
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"GET", "sandboxclaims", "sb"}}},
		{name: "a claim not given its sandbox yet",
			claims:    map[string]map[string]any{"sb": object("SandboxClaim", "sb", "c1")},
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"GET", "sandboxclaims", "sb"}, {"DELETE", "sandboxclaims", "sb"}},
			gone:      []string{"sandboxclaims/sb"}},
		{name: "no rights at all",
			sandboxes: map[string]map[string]any{"sb": object("Sandbox", "sb", "s1")},
			forbid:    []string{"get sandboxclaims", "get sandboxes", "delete sandboxes"},
			wantErr:   mcp.ErrForbidden,
			wantCalls: []call{{"GET", "sandboxes", "sb"}, {"GET", "sandboxclaims", "sb"}, {"DELETE", "sandboxes", "sb"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			for n, o := range tc.claims {
				f.put("sandboxclaims", n, o)
			}
			for n, o := range tc.sandboxes {
				f.put("sandboxes", n, o)
			}
			for _, v := range tc.forbid {
				f.forbid[v] = true
			}
			c := newCluster(t, f, "v1beta1")
			name := "sb"
			if _, ok := tc.sandboxes["pool-x7"]; ok {
				name = "pool-x7"
			}
			err := c.Delete(t.Context(), callerToken, "team-a", name)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Delete: %v, want %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), callerToken) {
				t.Errorf("error holds the token: %v", err)
			}
			var calls []call
			for _, r := range f.requests() {
				p := strings.Split(r.Path, "/")
				calls = append(calls, call{r.Method, p[6], p[7]})
				if r.Method == "DELETE" {
					var opts struct {
						Preconditions *struct{ UID string } `json:"preconditions"`
					}
					_ = json.Unmarshal(r.Body, &opts)
					blind := slices.Contains(tc.forbid, "get sandboxes") && p[6] == "sandboxes"
					if (opts.Preconditions == nil || opts.Preconditions.UID == "") != blind {
						t.Errorf("DELETE %s: preconditions %+v", r.Path, opts.Preconditions)
					}
				}
			}
			if !reflect.DeepEqual(calls, tc.wantCalls) {
				t.Errorf("calls %v, want %v", calls, tc.wantCalls)
			}
			for _, g := range tc.gone {
				res, n, _ := strings.Cut(g, "/")
				if f.has(res, n) {
					t.Errorf("%s not deleted", g)
				}
			}
			if tc.gone == nil && len(f.objects) != len(tc.claims)+len(tc.sandboxes) {
				t.Errorf("objects deleted: %d left", len(f.objects))
			}
		})
	}
}

// TestErrors maps the API server's answers onto the sentinels.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		code   int
		reason string
		want   error
	}{
		{401, "Unauthorized", mcp.ErrForbidden},
		{403, "Forbidden", mcp.ErrForbidden},
		{404, "NotFound", mcp.ErrNotFound},
		{409, "AlreadyExists", mcp.ErrConflict},
		{409, "Conflict", mcp.ErrConflict},
		{422, "Invalid", mcp.ErrInvalid},
		{400, "BadRequest", mcp.ErrInvalid},
		{415, "UnsupportedMediaType", mcp.ErrInvalid},
		{429, "TooManyRequests", mcp.ErrUnavailable},
		{500, "InternalError", mcp.ErrUnavailable},
		{503, "ServiceUnavailable", mcp.ErrUnavailable},
		{504, "Timeout", mcp.ErrUnavailable},
	} {
		f := newFakeAPI(t)
		f.respond = func(w http.ResponseWriter, r *http.Request) {
			if tc.code == 429 || tc.code == 503 {
				w.Header().Set("Retry-After", "0")
			}
			writeStatus(w, tc.code, tc.reason, "the message of "+tc.reason)
		}
		c := newCluster(t, f, "v1beta1")
		err := c.SetSuspended(t.Context(), callerToken, "team-a", "sb", true)
		if !errors.Is(err, tc.want) {
			t.Errorf("%d %s: %v, want %v", tc.code, tc.reason, err, tc.want)
			continue
		}
		if want := tc.want.Error() + ": the message of " + tc.reason; err.Error() != want {
			t.Errorf("%d %s: %q, want %q", tc.code, tc.reason, err, want)
		}
	}

	// No answer at all.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := New(Options{Config: &rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, SandboxVersion: "v1beta1"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.SetSuspended(t.Context(), callerToken, "team-a", "sb", true)
	if !errors.Is(err, mcp.ErrUnavailable) || strings.Contains(err.Error(), callerToken) {
		t.Errorf("connection refused: %v, want ErrUnavailable without the token", err)
	}

	// A call that outlasts Options.Timeout.
	f := newFakeAPI(t)
	f.respond = func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	c, err = New(Options{Config: f.routerConfig(t), SandboxVersion: "v1beta1", Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = c.SetSuspended(t.Context(), callerToken, "team-a", "sb", true)
	if !errors.Is(err, mcp.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout: %v, want ErrUnavailable wrapping the deadline", err)
	}

	// classify of client-go's own constructors.
	gr := schema.GroupResource{Group: SandboxGroup, Resource: "sandboxes"}
	for _, tc := range []struct {
		err  error
		want error
	}{
		{apierrors.NewForbidden(gr, "sb", errors.New("no")), mcp.ErrForbidden},
		{apierrors.NewUnauthorized("who"), mcp.ErrForbidden},
		{apierrors.NewNotFound(gr, "sb"), mcp.ErrNotFound},
		{apierrors.NewAlreadyExists(gr, "sb"), mcp.ErrConflict},
		{apierrors.NewConflict(gr, "sb", errors.New("changed")), mcp.ErrConflict},
		{apierrors.NewInvalid(schema.GroupKind{Group: SandboxGroup, Kind: "Sandbox"}, "sb", nil), mcp.ErrInvalid},
		{apierrors.NewBadRequest("bad"), mcp.ErrInvalid},
		{apierrors.NewTimeoutError("slow", 1), mcp.ErrUnavailable},
		{apierrors.NewServerTimeout(gr, "get", 1), mcp.ErrUnavailable},
		{apierrors.NewTooManyRequests("busy", 1), mcp.ErrUnavailable},
		{apierrors.NewServiceUnavailable("down"), mcp.ErrUnavailable},
		{apierrors.NewInternalError(errors.New("boom")), mcp.ErrUnavailable},
		{apierrors.NewGenericServerResponse(502, "get", gr, "sb", "bad gateway", 0, true), mcp.ErrUnavailable},
		{context.Canceled, mcp.ErrUnavailable},
	} {
		if got := classify(tc.err); !errors.Is(got, tc.want) {
			t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if classify(nil) != nil {
		t.Error("classify(nil) not nil")
	}
}

// TestRefusedBeforeSending: what must not reach the API server.
func TestRefusedBeforeSending(t *testing.T) {
	f := newFakeAPI(t)
	c := newCluster(t, f, "v1beta1")
	ctx := t.Context()
	for _, tc := range []struct {
		what string
		err  error
		want error
	}{
		{"no token", c.SetSuspended(ctx, "", "team-a", "sb", true), mcp.ErrForbidden},
		{"token with a newline", c.Delete(ctx, "abc\r\nX-Evil: 1", "team-a", "sb"), mcp.ErrForbidden},
		{"token with a space", c.CreateClaim(ctx, "Bearer abc", "team-a", "sb", "t"), mcp.ErrForbidden},
		{"overlong token", func() error {
			_, err := c.ListNames(ctx, strings.Repeat("a", maxTokenLen+1), "team-a", "", 1)
			return err
		}(), mcp.ErrForbidden},
		{"bad namespace", c.SetSuspended(ctx, callerToken, "Team_A", "sb", true), mcp.ErrInvalid},
		{"empty name", c.Delete(ctx, callerToken, "team-a", ""), mcp.ErrInvalid},
		{"name with a slash", c.Delete(ctx, callerToken, "team-a", "a/b"), mcp.ErrInvalid},
		{"bad template", c.CreateClaim(ctx, callerToken, "team-a", "sb", "No Such"), mcp.ErrInvalid},
		{"list: bad namespace", func() error { _, err := c.ListNames(ctx, callerToken, "", "", 1); return err }(), mcp.ErrInvalid},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, tc.err, tc.want)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// TestClientCache: one client per token, shared by concurrent calls, and
// bounded.
func TestClientCache(t *testing.T) {
	f := newFakeAPI(t)
	f.put("sandboxes", "sb", object("Sandbox", "sb", "u1"))
	c := newCluster(t, f, "v1beta1")
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			token := []string{"token-a", "token-b"}[i%2]
			if err := c.SetSuspended(t.Context(), token, "team-a", "sb", i%4 < 2); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := c.clients.Len(); n != 2 {
		t.Errorf("%d cached clients, want 2", n)
	}
	a1, _ := c.clientsFor("token-a")
	a2, _ := c.clientsFor("token-a")
	if a1 != a2 {
		t.Error("token-a got a new client")
	}
	for i := range cacheSize + 10 {
		if _, err := c.clientsFor("t" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String()); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.clients.Len(); n != cacheSize {
		t.Errorf("%d cached clients, want at most %d", n, cacheSize)
	}
	seen := map[string]bool{}
	for _, r := range f.requests() {
		seen[r.Authorization] = true
	}
	if !reflect.DeepEqual(seen, map[string]bool{"Bearer token-a": true, "Bearer token-b": true}) {
		t.Errorf("authorizations %v", seen)
	}
}

func TestNewOptions(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	for _, tc := range []struct {
		opts Options
		ok   bool
	}{
		{Options{Config: cfg, SandboxVersion: "v1beta1"}, true},
		{Options{Config: cfg, SandboxVersion: "v1alpha1", ClaimVersion: "v1beta1", Timeout: time.Second}, true},
		{Options{SandboxVersion: "v1beta1"}, false},
		{Options{Config: &rest.Config{}, SandboxVersion: "v1beta1"}, false},
		{Options{Config: cfg}, false},
		{Options{Config: cfg, SandboxVersion: "v1"}, false},
		{Options{Config: cfg, SandboxVersion: "v1beta1", ClaimVersion: "v2"}, false},
		{Options{Config: cfg, SandboxVersion: "v1beta1", Timeout: -time.Second}, false},
		{Options{Config: &rest.Config{Host: "https://127.0.0.1:1", TLSClientConfig: rest.TLSClientConfig{CAFile: "/nonexistent/ca.crt"}}, SandboxVersion: "v1beta1"}, false},
	} {
		_, err := New(tc.opts)
		if (err == nil) != tc.ok {
			t.Errorf("New(%+v): %v", tc.opts, err)
		}
	}
	c, err := New(Options{Config: cfg, SandboxVersion: "v1beta1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.timeout != DefaultTimeout || c.claims.Version != DefaultClaimVersion || c.base.BearerToken != "" {
		t.Errorf("defaults: timeout %s, claims %s", c.timeout, c.claims)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
