package access

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestLimits runs the router binary with abuse limits: a caller past its
// rate, a sandbox past its concurrency (an open stream holds its place
// until it closes), and an address that sent too many refused
// credentials; each gets 429 with Retry-After and a code.
func TestLimits(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	tok := e.serviceAccount(t, agents, "limited")
	e.grant(t, teamA, "limited", []rbacv1.Subject{sa(agents, "limited")})
	p := e.startRouter(t, "--authz-mode", "kubernetes",
		"--limit-identity-rps", "0.001", "--limit-identity-burst", "20",
		"--limit-sandbox-concurrency", "1",
		"--limit-failed-auth-per-minute", "0.01", "--limit-failed-auth-burst", "3")

	t.Run("a sandbox's concurrency", func(t *testing.T) {
		// An event stream keeps its request in progress.
		sctx, cancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(sctx, http.MethodGet, "http://"+p.HTTPAddr+"/sse", nil)
		req.Header.Set("X-Sandbox-ID", "sb2")
		req.Header.Set("X-Sandbox-Namespace", teamA)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "data:") && !strings.HasPrefix(line, "event:") && !strings.HasPrefix(line, "id:") {
			t.Fatalf("the stream's first line: %q %v", line, err)
		}
		r := get(ctx, p, teamA, "sb2", tok)
		if !r.is(http.StatusTooManyRequests, "sandbox_busy") {
			t.Fatalf("a second request while the stream is open: %v, want 429 sandbox_busy", r)
		}
		if r := get(ctx, p, teamA, "sb3", tok); !r.served(teamA, "sb3") {
			t.Fatalf("another sandbox meanwhile: %v", r)
		}
		cancel()
		resp.Body.Close()
		eventually(t, p, teamA, "sb2", tok, "the sandbox's place freed when the stream closed", func(r reply) bool { return r.served(teamA, "sb2") })
	})

	t.Run("an identity's rate", func(t *testing.T) {
		fast := e.serviceAccount(t, agents, "limited-fast")
		e.grant(t, teamA, "limited-fast", []rbacv1.Subject{sa(agents, "limited-fast")})
		for i := range 20 {
			if r := get(ctx, p, teamA, "sb1", fast); !r.served(teamA, "sb1") {
				t.Fatalf("request %d within the burst: %v", i, r)
			}
		}
		if r := get(ctx, p, teamA, "sb1", fast); !r.is(http.StatusTooManyRequests, "rate_limited") || r.RetryAfter == "" {
			t.Fatalf("past the burst of 20: %v (Retry-After %q), want 429 rate_limited", r, r.RetryAfter)
		}
		if r := get(ctx, p, teamA, "sb1", tok); !r.served(teamA, "sb1") {
			t.Fatalf("another identity meanwhile: %v", r)
		}
	})

	t.Run("refused credentials of one address", func(t *testing.T) {
		for range 3 {
			if r := get(ctx, p, teamA, "sb1", "guess"); !r.is(http.StatusUnauthorized, "invalid_credentials") {
				t.Fatalf("a guess: %v", r)
			}
		}
		other := e.serviceAccount(t, agents, "limited-neighbour")
		e.grant(t, teamA, "limited-neighbour", []rbacv1.Subject{sa(agents, "limited-neighbour")})
		if r := get(ctx, p, teamA, "sb1", other); !r.is(http.StatusTooManyRequests, "too_many_failed_credentials") {
			t.Fatalf("a good token from the address after 3 refused ones: %v, want 429 too_many_failed_credentials", r)
		}
	})
}
