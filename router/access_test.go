package router

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// refusal is an access refusal as access.Error carries it.
type refusal struct {
	status    int
	code      string
	challenge string
}

func (r *refusal) Error() string           { return "refused" }
func (r *refusal) HTTPStatus() int         { return r.status }
func (r *refusal) ErrorCode() string       { return r.code }
func (r *refusal) WWWAuthenticate() string { return r.challenge }

// headerAccess admits requests whose X-Test-Token is "let-me-in" for
// sandbox sb1 only; no token is a 401, another sandbox a 403.
type headerAccess struct{ checks, open atomic.Int64 }

func (a *headerAccess) Check(ctx context.Context, r *http.Request, sb resolver.Key, port uint16) (func(), error) {
	a.checks.Add(1)
	switch {
	case r.Header.Get("X-Test-Token") == "":
		return nil, &refusal{http.StatusUnauthorized, "missing_credentials", `Bearer realm="test"`}
	case r.Header.Get("X-Test-Token") != "let-me-in" || sb.Name != "sb1":
		return nil, &refusal{http.StatusForbidden, "sandbox_forbidden", ""}
	}
	a.open.Add(1)
	return func() { a.open.Add(-1) }, nil
}

// TestAccessBeforeLookup: the access check runs before the sandbox is
// looked up, so a refused caller learns nothing (an unknown sandbox is a
// 403 too, not a 404), and its answer carries the challenge.
func TestAccessBeforeLookup(t *testing.T) {
	acc := &headerAccess{}
	env := newProxyEnv(t, func(o *Options) { o.Access = acc })
	be, seen := startRecorder(t, false)
	client := env.client(viaH1)
	send := func(name, token string) response {
		req := env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", be.port, nil)
		req.Header.Set(HeaderSandboxID, name)
		if token != "" {
			req.Header.Set("X-Test-Token", token)
		}
		return doRequest(client, req)
	}
	lookups := func() int {
		env.res.mu.Lock()
		defer env.res.mu.Unlock()
		return len(env.res.lookups)
	}
	r := send("sb1", "")
	if r.status != 401 || !strings.Contains(r.body, "missing_credentials") || r.header.Get("WWW-Authenticate") != `Bearer realm="test"` {
		t.Fatalf("no token: %d %q %v", r.status, r.body, r.header)
	}
	for _, name := range []string{"sb1", "no-such-sandbox"} {
		token := "wrong"
		if name != "sb1" {
			token = "let-me-in"
		}
		if r := send(name, token); r.status != 403 || !strings.Contains(r.body, "sandbox_forbidden") || r.header.Get("WWW-Authenticate") != "" {
			t.Fatalf("%s with %s: %d %q", name, token, r.status, r.body)
		}
	}
	if n := lookups(); n != 0 {
		t.Fatalf("%d lookups for refused requests, want none", n)
	}
	if len(seen) != 0 {
		t.Fatal("a refused request reached the sandbox")
	}
	if r := send("sb1", "let-me-in"); r.status != 200 {
		t.Fatalf("admitted: %d %q", r.status, r.body)
	}
	waitUntil(t, "the admitted request's release", func() bool { return acc.open.Load() == 0 })
	// /healthz without a key answers without a check, as before.
	resp, err := client.Get(env.url(viaH1, "", "/healthz"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := acc.checks.Load(); got != 4 {
		t.Errorf("%d checks, want 4", got)
	}
	if got := env.metric("sandbox_router_requests_total", map[string]string{"code": "403"}); got != 2 {
		t.Errorf("403s counted %v", got)
	}
}
