package dashboard

import (
	"net/http"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func TestOneSandbox(t *testing.T) {
	fr := fixture()
	fr.setLifecycle("alpha", "web-1", resolver.Lifecycle{IdleTimeout: 15 * time.Minute, IdleTimeoutSet: true, Release: resolver.ReleaseOnReady, Revision: "42"})
	h := start(t, Options{Sandboxes: fr, RouterURL: "https://sandboxes.example.com:8443/"})
	var a sandboxAnswer
	if rec := get(t, h, "/api/sandboxes/alpha/web-1", &a); rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if a.Sandbox.State != "running" || a.Sandbox.PodIP != "10.0.0.1" || a.Sandbox.UID != "u-a1" {
		t.Errorf("sandbox %+v", a.Sandbox)
	}
	if a.Lifecycle == nil || a.Lifecycle.IdleTimeoutSeconds == nil || *a.Lifecycle.IdleTimeoutSeconds != 900 || a.Lifecycle.Release != "ready" || a.Lifecycle.Revision != "42" || a.Lifecycle.HoldTimeoutSeconds != nil {
		t.Errorf("lifecycle %+v", a.Lifecycle)
	}
	if want := "curl -H 'X-Sandbox-ID: web-1' -H 'X-Sandbox-Namespace: alpha' https://sandboxes.example.com:8443/"; a.Curl != want {
		t.Errorf("curl %q, want %q", a.Curl, want)
	}
	for path, code := range map[string]int{
		"/api/sandboxes/alpha/nope":     http.StatusNotFound,
		"/api/sandboxes/alpha/pool-aaa": http.StatusNotFound, // a warm-pool pod is not a sandbox
		"/api/sandboxes/Alpha/web-1":    http.StatusBadRequest,
		"/api/sandboxes/alpha/web-1/x":  http.StatusNotFound,
	} {
		if rec := get(t, h, path, nil); rec.Code != code {
			t.Errorf("%s: %d, want %d", path, rec.Code, code)
		}
	}
}

func TestRouterURLMustBeSafeInAShell(t *testing.T) {
	for _, u := range []string{"ftp://x", "http://", "http://x/?a=b", "http://x/'$(id)'", "http://u:p@x"} {
		if _, err := New(Options{Sandboxes: fixture(), RouterURL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
