package access

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/sandbox-router/sandbox-router/access/scoped"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
)

// TestWarmPoolPodAccess: an unclaimed warm-pool pod, reached by its pod's
// name and UID (X-Sandbox-ID and X-Sandbox-UID), follows the same rules as
// a sandbox: RBAC on sandboxes/proxy with the pod's name, and v2 scoped
// tokens bound to the pod's name and UID.
func TestWarmPoolPodAccess(t *testing.T) {
	e := newEnv(t)
	pod, uid, _, err := e.sim.CreateWarmPoolPod(t.Context(), teamB, "pool")
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	k1 := writeKey(t, keys, "k1")
	everything := e.serviceAccount(t, agents, "warm-everything")
	e.grant(t, teamB, "warm-everything", []rbacv1.Subject{sa(agents, "warm-everything")})
	sb1Only := e.serviceAccount(t, agents, "warm-sb1-only")
	e.grant(t, teamB, "warm-sb1-only", []rbacv1.Subject{sa(agents, "warm-sb1-only")}, "sb1")
	byPodName := e.serviceAccount(t, agents, "warm-by-pod-name")
	e.grant(t, teamB, "warm-by-pod-name", []rbacv1.Subject{sa(agents, "warm-by-pod-name")}, pod)
	p := e.startRouter(t, "--authz-mode", "kubernetes,scoped-token", "--authz-scoped-token-public-keys", keys)

	now := time.Now()
	v2 := func(name, uid string) string {
		tok, err := scoped.MintV2(k1, scoped.Claims{KeyID: "k1", Namespace: teamB, Name: name, UID: uid, Expires: now.Add(time.Hour)}, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// The pod starts in the sim; wait until the router reaches it.
	deadline := time.Now().Add(waitTimeout)
	for {
		status, got := pinned(t, p, pod, string(uid), everything)
		if status == http.StatusOK && got == pod {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the warm-pool pod never answered: %d %q", status, got)
		}
		time.Sleep(50 * time.Millisecond) // polling a pod that is starting
	}
	for _, tc := range []struct {
		who, token, uid string
		status          int
	}{
		{"RBAC for every sandbox of the namespace", everything, string(uid), http.StatusOK},
		{"RBAC for the pod's name", byPodName, string(uid), http.StatusOK},
		{"RBAC for sb1 only", sb1Only, string(uid), http.StatusForbidden},
		{"a v2 token for the pod's name and UID", v2(pod, string(uid)), string(uid), http.StatusOK},
		{"a v2 token for the pod's name, another UID", v2(pod, "0b5c7c0e-7a5a-4c42-9d0e-3c1a2b3c4d5e"), string(uid), http.StatusForbidden},
		{"a v2 token for the pod, the request not pinned", v2(pod, string(uid)), "", http.StatusForbidden},
	} {
		if status, got := pinned(t, p, pod, tc.uid, tc.token); status != tc.status || (status == http.StatusOK && got != pod) {
			t.Errorf("%s: %d from %q, want %d", tc.who, status, got, tc.status)
		}
	}
}

// pinned sends a GET for the pod name of teamB pinned to uid (unless
// empty) with token, and returns the status and the pod that answered.
func pinned(t *testing.T, p *routerproc.Proc, name, uid, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.HTTPAddr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Sandbox-ID", name)
	req.Header.Set("X-Sandbox-Namespace", teamB)
	if uid != "" {
		req.Header.Set("X-Sandbox-UID", uid)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m struct{ Pod string }
	_ = json.Unmarshal(body, &m)
	return resp.StatusCode, m.Pod
}
