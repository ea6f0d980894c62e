package main

import (
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDemoSmoke runs the demo as make demo does (a router binary built from
// this tree, the real API server, the sim), but on free ports and in smoke
// mode: every request it prints must answer as expected (sleepy woken by
// the activator, suspended again once idle for its 3s, woken again;
// grpc-go over xDS straight to alpha's pod, and through the router to
// grpc-sleepy, which it resumes; the MCP endpoint initialized with curl
// and driven with the Go SDK's MCP client as team-a/agent), and
// everything it started must be gone when it returns.
func TestDemoSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("demo: real etcd + kube-apiserver test skipped in -short mode")
	}
	work := t.TempDir()
	var out bytes.Buffer
	err := run(t.Context(), options{
		Smoke:      true,
		StartDelay: 500 * time.Millisecond,
		IPBase:     netip.MustParseAddr("127.0.8.1"), // apart from the other e2e packages' sims
		WorkDir:    work,
		Out:        &out,
		Logf:       t.Logf,
	})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo -smoke: %v", err)
	}
	for _, want := range []string{
		"-H 'Host: alpha.default.sandbox.localhost'",
		"-H 'X-Sandbox-ID: beta' -H 'X-Sandbox-Namespace: team-a'",
		"-H 'Host: 8888-alpha.default.sandbox.localhost'",
		"-H 'X-Sandbox-UID: ",
		"-H 'X-Sandbox-ID: sleepy'",
		"held ~0.5s while the router resumes sleepy, then 200",
		`-X PATCH --data-binary '{"spec":{"operatingMode":"Suspended"}}'`,
		"| grep '^sandbox_router_activator_'",
		"sleepy idle for 3s: suspended again by the router",
		"-> 401 ", "-> 403 ", `-b `, `"$LINK"`, "(cookie sb-session set: true), then 200 from beta",
		"-target 9001-alpha.default.sandbox.localhost",
		"(alpha's pod ", "(the router, which resumed grpc-sleepy)", "(grpc-sleepy's new pod ",
		"-H 'Host: mcp.sandbox.localhost' http://127.0.0.1:", `"method":"initialize"`,
		`WWW-Authenticate: Bearer resource_metadata="http://mcp.sandbox.localhost:`,
		"serverInfo sandbox-router", "claude mcp add --transport http sandboxes http://mcp.sandbox.localhost:",
		"12 tools: create_sandbox, delete_sandbox, execute_command, ", "-> team-a/beta running\n", `exit 0, stdout "hello from MCP\n"`,
		"Kubernetes refused to suspend team-a/beta for you (RBAC)",
		"  dashboard       http://127.0.0.1:", "/api/overview\n      -> 200 ", `"namespace":"team-a"`,
		"smoke: all ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "FAILED") {
		t.Error("a request FAILED although run returned nil")
	}
	// The temporary directory (cluster data, logs, the router binary) is
	// removed; run returns only after each process it started has exited.
	left, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("left behind in the work directory: %s", e.Name())
	}
}
