package mcpe2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// call runs a tool and returns its text and whether it was a tool error.
func call(t *testing.T, cs *sdk.ClientSession, tool string, args map[string]any) (string, bool) {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: protocol error: %v", tool, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String(), res.IsError
}

// mustCall runs a tool that must succeed and decodes its JSON text.
func mustCall(t *testing.T, cs *sdk.ClientSession, tool string, args map[string]any, into any) string {
	t.Helper()
	text, isErr := call(t, cs, tool, args)
	if isErr {
		t.Fatalf("%s(%v): tool error: %s", tool, args, text)
	}
	if into != nil {
		if err := json.Unmarshal([]byte(text), into); err != nil {
			t.Fatalf("%s: %v in %s", tool, err, text)
		}
	}
	return text
}

// mustRefuse runs a tool that must fail and returns its reason.
func mustRefuse(t *testing.T, cs *sdk.ClientSession, tool string, args map[string]any) string {
	t.Helper()
	text, isErr := call(t, cs, tool, args)
	if !isErr {
		t.Fatalf("%s(%v) succeeded: %s", tool, args, text)
	}
	return text
}

type listed struct {
	Sandboxes []struct {
		Namespace, Name, State string
	} `json:"sandboxes"`
}

func (l listed) names() []string {
	var out []string
	for _, s := range l.Sandboxes {
		out = append(out, s.Namespace+"/"+s.Name)
	}
	return out
}

// TestToolsActForTheCaller: two identities with different RBAC see
// different sandboxes, a sandbox one may not reach answers exactly as a
// missing one, and the writes of one who may not are refused by
// Kubernetes.
func TestToolsActForTheCaller(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.connect(t, e.alice, nil), e.connect(t, e.bob, nil)

	tools, err := alice.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	want := []string{"create_sandbox", "delete_sandbox", "execute_command", "file_exists", "get_sandbox", "list_files", "list_sandboxes",
		"preview_url", "read_file", "resume_sandbox", "suspend_sandbox", "write_file"}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("tools %v, want %v", names, want)
	}

	var la, lb listed
	mustCall(t, alice, "list_sandboxes", nil, &la)
	mustCall(t, bob, "list_sandboxes", nil, &lb)
	if got := la.names(); !slices.Equal(got, []string{"team-a/alpha", "team-a/beta", "team-a/gamma"}) {
		t.Errorf("alice lists %v", got)
	}
	if got := lb.names(); !slices.Equal(got, []string{"team-a/beta"}) {
		t.Errorf("bob lists %v", got)
	}
	var web listed
	mustCall(t, alice, "list_sandboxes", map[string]any{"namespace": teamA, "label_selector": "tier=web"}, &web)
	if got := web.names(); !slices.Equal(got, []string{"team-a/alpha"}) {
		t.Errorf("alice lists tier=web as %v", got)
	}

	// Invisible and missing are the same answer, down to the wording.
	hidden := mustRefuse(t, bob, "get_sandbox", map[string]any{"namespace": teamA, "name": "alpha"})
	missing := mustRefuse(t, bob, "get_sandbox", map[string]any{"namespace": teamA, "name": "zzzzz"})
	if strings.ReplaceAll(hidden, "alpha", "zzzzz") != missing {
		t.Errorf("a hidden sandbox answers %q, a missing one %q", hidden, missing)
	}
	otherNS := mustRefuse(t, alice, "execute_command", map[string]any{"namespace": teamB, "name": "delta", "command": "hostname"})
	if !strings.Contains(otherNS, "no sandbox team-b/delta that you may reach") {
		t.Errorf("alice runs in team-b: %s", otherNS)
	}

	// bob may reach beta but not change it: Kubernetes says no to him.
	refused := mustRefuse(t, bob, "suspend_sandbox", map[string]any{"namespace": teamA, "name": "beta"})
	if !strings.Contains(refused, "Kubernetes refused to suspend team-a/beta for you") {
		t.Errorf("bob suspends: %s", refused)
	}
	refused = mustRefuse(t, bob, "create_sandbox", map[string]any{"namespace": teamA, "template": "python", "name": "bobs"})
	if !strings.Contains(refused, "Kubernetes refused to create") {
		t.Errorf("bob creates: %s", refused)
	}
	// Bad arguments never get anywhere, with a reason.
	for _, bad := range []map[string]any{
		{"namespace": teamA, "name": "beta", "path": "../../etc/passwd"},
		{"namespace": "Team_A", "name": "beta", "path": "a"},
		{"namespace": teamA, "name": "beta", "path": "a\x00b"},
		{"namespace": teamA, "name": "beta", "path": "a", "offset": -1},
		{"namespace": teamA, "name": "beta", "path": "a", "extra": true},
	} {
		if text := mustRefuse(t, bob, "read_file", bad); text == "" {
			t.Errorf("read_file(%v) refused without a reason", bad)
		}
	}
}

// TestExecuteWakesASuspendedSandbox: execute_command on a suspended
// sandbox resumes it through the router's activator and returns the
// command's output; files written through the tools read back, text as
// text and binary as a resource, and a large file comes a page at a time.
func TestExecuteWakesASuspendedSandbox(t *testing.T) {
	e := newEnv(t)
	alice := e.connect(t, e.alice, nil)

	var sb struct{ State string }
	mustCall(t, alice, "get_sandbox", map[string]any{"namespace": teamA, "name": "gamma"}, &sb)
	if sb.State != "suspended" {
		t.Fatalf("gamma is %s, want suspended", sb.State)
	}
	var out struct {
		Stdout   string `json:"stdout"`
		ExitCode int    `json:"exit_code"`
	}
	mustCall(t, alice, "execute_command", map[string]any{"namespace": teamA, "name": "gamma", "command": "echo woken up", "timeout_seconds": 120}, &out)
	if out.Stdout != "woken up\n" || out.ExitCode != 0 {
		t.Fatalf("execute_command: %+v", out)
	}
	mustCall(t, alice, "get_sandbox", map[string]any{"namespace": teamA, "name": "gamma"}, &sb)
	if sb.State != "running" {
		t.Errorf("gamma is %s after the command, want running", sb.State)
	}

	ref := map[string]any{"namespace": teamA, "name": "alpha"}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range ref {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	mustCall(t, alice, "write_file", with("path", "notes/hello.txt", "content", "hello, world"), nil)
	if text := mustCall(t, alice, "read_file", with("path", "notes/hello.txt"), nil); text != "hello, world" {
		t.Errorf("read_file: %q", text)
	}
	var exists struct{ Exists bool }
	mustCall(t, alice, "file_exists", with("path", "notes/hello.txt"), &exists)
	if !exists.Exists {
		t.Error("file_exists: false")
	}
	mustCall(t, alice, "file_exists", with("path", "notes/nope.txt"), &exists)
	if exists.Exists {
		t.Error("file_exists of a missing file: true")
	}
	if text := mustCall(t, alice, "list_files", with("path", "notes"), nil); !strings.Contains(text, "hello.txt") {
		t.Errorf("list_files: %s", text)
	}

	bin := []byte{0x89, 'P', 'N', 'G', 0, 1, 2, 3, 0xff}
	mustCall(t, alice, "write_file", with("path", "img.png", "content", base64.StdEncoding.EncodeToString(bin), "encoding", "base64"), nil)
	res, err := alice.CallTool(t.Context(), &sdk.CallToolParams{Name: "read_file", Arguments: with("path", "img.png")})
	if err != nil || res.IsError || len(res.Content) == 0 {
		t.Fatalf("read_file of a binary file: %v %+v", err, res)
	}
	er, ok := res.Content[0].(*sdk.EmbeddedResource)
	if !ok || string(er.Resource.Blob) != string(bin) {
		t.Errorf("a binary file comes back as %T %+v", res.Content[0], res.Content[0])
	}

	big := strings.Repeat("0123456789", 1000) // 10,000 bytes
	mustCall(t, alice, "write_file", with("path", "big.txt", "content", big), nil)
	page := mustCall(t, alice, "read_file", with("path", "big.txt", "length", 4000), nil)
	if !strings.HasPrefix(page, big[:4000]) || !strings.Contains(page, "6000 more bytes follow; call read_file with offset=4000") {
		t.Errorf("the first page ends %q", page[max(0, len(page)-120):])
	}
	last := mustCall(t, alice, "read_file", with("path", "big.txt", "offset", 8000, "length", 4000), nil)
	if last != big[8000:] {
		t.Errorf("the last page is %d bytes", len(last))
	}
	cut := mustCall(t, alice, "execute_command", with("command", "cat big.txt", "max_output_bytes", 100), nil)
	if !strings.Contains(cut, "9900 more bytes of stdout cut") {
		t.Errorf("a long output is not cut with a marker: %s", cut)
	}
}

// TestLifecycleAsTheCaller: create_sandbox makes a SandboxClaim with the
// caller's own credentials (the API server's audit log names the caller,
// not the router), the sandbox runs and serves, suspend and resume work,
// preview_url mints a link, and delete_sandbox removes it.
func TestLifecycleAsTheCaller(t *testing.T) {
	e := newEnv(t)
	alice := e.connect(t, e.alice, nil)
	since := time.Now().Add(-time.Second)

	var created struct{ Name, State string }
	mustCall(t, alice, "create_sandbox", map[string]any{"namespace": teamA, "template": "python", "name": "fresh", "wait_seconds": 120}, &created)
	if created.State != "running" {
		t.Fatalf("create_sandbox: %+v", created)
	}
	events, err := e.c.WaitAuditEvents(t.Context(), func(ev []cluster.AuditEvent) bool {
		return slices.ContainsFunc(ev, func(a cluster.AuditEvent) bool {
			return a.Resource == "sandboxclaims" && a.Verb == "create" && a.Name == "fresh"
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if ev.Resource == "sandboxclaims" && ev.Verb == "create" && ev.Name == "fresh" {
			if ev.User != "system:serviceaccount:agents:alice" || ev.Code != http.StatusCreated {
				t.Errorf("the claim was created by %q (%d), want alice", ev.User, ev.Code)
			}
		}
	}
	var out struct{ Stdout string }
	mustCall(t, alice, "execute_command", map[string]any{"namespace": teamA, "name": "fresh", "command": "echo new"}, &out)
	if out.Stdout != "new\n" {
		t.Errorf("the new sandbox says %q", out.Stdout)
	}

	var sb struct{ State string }
	mustCall(t, alice, "suspend_sandbox", map[string]any{"namespace": teamA, "name": "fresh"}, &sb)
	if sb.State != "suspending" && sb.State != "suspended" {
		t.Errorf("after suspend_sandbox: %s", sb.State)
	}
	mustCall(t, alice, "resume_sandbox", map[string]any{"namespace": teamA, "name": "fresh", "wait_seconds": 120}, &sb)
	if sb.State != "running" {
		t.Errorf("after resume_sandbox: %s", sb.State)
	}
	patches := 0
	events, _ = e.c.AuditEvents()
	for _, ev := range events {
		if ev.Resource == "sandboxes" && ev.Verb == "patch" && ev.Name == "fresh" && ev.RequestReceived.After(since) {
			patches++
			if ev.User != "system:serviceaccount:agents:alice" {
				t.Errorf("fresh was patched by %q", ev.User)
			}
		}
	}
	if patches < 2 {
		t.Errorf("%d patches of fresh audited, want the suspend and the resume", patches)
	}

	var preview struct {
		URL string `json:"url"`
	}
	mustCall(t, alice, "preview_url", map[string]any{"namespace": teamA, "name": "fresh", "port": 8888, "ttl_seconds": 60}, &preview)
	if !strings.HasPrefix(preview.URL, "http://8888-fresh.team-a.sandbox.test") || !strings.Contains(preview.URL, "token") {
		t.Errorf("preview_url: %q", preview.URL)
	}

	// The link's scoped token is a credential of its own: it sees that
	// one sandbox, runs commands in it, and changes nothing.
	link, err := url.Parse(preview.URL)
	if err != nil {
		t.Fatal(err)
	}
	scoped := link.Query().Get(access.DefaultEntryParam)
	if scoped == "" {
		t.Fatalf("no token in %s", preview.URL)
	}
	viaLink := e.connect(t, scoped, nil)
	var own listed
	mustCall(t, viaLink, "list_sandboxes", nil, &own)
	if got := own.names(); !slices.Equal(got, []string{"team-a/fresh"}) {
		t.Errorf("a scoped token lists %v", got)
	}
	mustCall(t, viaLink, "execute_command", map[string]any{"namespace": teamA, "name": "fresh", "command": "echo scoped"}, &out)
	if out.Stdout != "scoped\n" {
		t.Errorf("with a scoped token: %q", out.Stdout)
	}
	if text := mustRefuse(t, viaLink, "suspend_sandbox", map[string]any{"namespace": teamA, "name": "fresh"}); !strings.Contains(text, "needs a Kubernetes token") {
		t.Errorf("a scoped token suspends: %s", text)
	}
	mustRefuse(t, viaLink, "get_sandbox", map[string]any{"namespace": teamA, "name": "alpha"})

	mustCall(t, alice, "delete_sandbox", map[string]any{"namespace": teamA, "name": "fresh"}, nil)
	claimGVR := schema.GroupVersionResource{Group: "extensions.agents.x-k8s.io", Version: "v1beta1", Resource: "sandboxclaims"}
	if _, err := e.dyn.Resource(claimGVR).Namespace(teamA).Get(t.Context(), "fresh", metav1.GetOptions{}); err == nil {
		t.Error("the claim is still there")
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	for {
		text, isErr := call(t, alice, "get_sandbox", map[string]any{"namespace": teamA, "name": "fresh"})
		if isErr && strings.Contains(text, "no sandbox team-a/fresh") {
			break
		}
		ch, stop := waitChange(e, teamA, "fresh")
		select {
		case <-ctx.Done():
			stop()
			t.Fatalf("fresh is still there: %s", text)
		case <-ch:
			stop()
		}
	}
}

// waitChange fires when the sim sees the sandbox's pod change.
func waitChange(e *env, ns, name string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	go func() {
		_, _ = e.sim.WaitPod(ctx, ns, name, func(sim.PodInfo) bool { return false })
		close(ch)
	}()
	return ch, cancel
}

// TestResourcesFollowTheCluster: a client's resource list is its own
// sandboxes, and a subscribed client hears of a sandbox that suspends.
func TestResourcesFollowTheCluster(t *testing.T) {
	e := newEnv(t)
	updated := make(chan string, 16)
	listChanged := make(chan struct{}, 1)
	bob := e.connect(t, e.bob, &sdk.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, r *sdk.ResourceUpdatedNotificationRequest) {
			select {
			case updated <- r.Params.URI:
			default:
			}
		},
		ResourceListChangedHandler: func(context.Context, *sdk.ResourceListChangedRequest) {
			select {
			case listChanged <- struct{}{}:
			default:
			}
		},
	})
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	// The list is filled just after the first request, and says so; a
	// notification sent before the client's event stream opened is lost,
	// so the list is also read again now and then until the deadline.
	recheck := time.NewTicker(50 * time.Millisecond)
	defer recheck.Stop()
	var uris []string
	for {
		res, err := bob.ListResources(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		uris = uris[:0]
		for _, r := range res.Resources {
			uris = append(uris, r.URI)
		}
		if len(uris) > 0 {
			break
		}
		select {
		case <-listChanged:
		case <-recheck.C:
		case <-ctx.Done():
			t.Fatal("bob's resource list stayed empty")
		}
	}
	if !slices.Equal(uris, []string{"sandbox://team-a/beta"}) {
		t.Fatalf("bob's resources: %v", uris)
	}
	if err := bob.Subscribe(ctx, &sdk.SubscribeParams{URI: "sandbox://team-a/beta"}); err != nil {
		t.Fatal(err)
	}
	if err := bob.Subscribe(ctx, &sdk.SubscribeParams{URI: "sandbox://team-a/alpha"}); err == nil {
		t.Error("bob subscribed to alpha, which he may not reach")
	}
	alice := e.connect(t, e.alice, nil)
	mustCall(t, alice, "suspend_sandbox", map[string]any{"namespace": teamA, "name": "beta"}, nil)
	select {
	case uri := <-updated:
		if uri != "sandbox://team-a/beta" {
			t.Errorf("updated %s", uri)
		}
	case <-ctx.Done():
		t.Fatal("no resources/updated for beta after it was suspended")
	}
	rr, err := bob.ReadResource(ctx, &sdk.ReadResourceParams{URI: "sandbox://team-a/beta"})
	if err != nil || len(rr.Contents) == 0 || !strings.Contains(rr.Contents[0].Text, `"state":"suspend`) {
		t.Errorf("read beta: %v %+v", err, rr)
	}
	// bob's runtime call wakes it again: reaching a sandbox includes that.
	var out struct{ Stdout string }
	mustCall(t, bob, "execute_command", map[string]any{"namespace": teamA, "name": "beta", "command": "echo back", "timeout_seconds": 120}, &out)
	if out.Stdout != "back\n" {
		t.Errorf("beta says %q", out.Stdout)
	}
}

// TestAuthentication: no token or a bad one is answered 401 with the
// challenge that leads MCP clients to the protected-resource metadata,
// which names the endpoint.
func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	for _, token := range []string{"", "not-a-token"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, mcpURL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := e.httpClient(token).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := `Bearer resource_metadata="http://` + mcpHost + `/.well-known/oauth-protected-resource/mcp"`
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != want {
			t.Errorf("token %q: %d %q", token, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+mcpHost+"/.well-known/oauth-protected-resource/mcp", nil)
	resp, err := e.httpClient("").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var meta struct {
		Resource string   `json:"resource"`
		Methods  []string `json:"bearer_methods_supported"`
	}
	if err := json.Unmarshal(body, &meta); err != nil || meta.Resource != mcpURL || !slices.Equal(meta.Methods, []string{"header"}) {
		t.Errorf("metadata: %v %s", err, body)
	}
}

// TestTypeScriptClient: the official TypeScript SDK, which nobody here
// wrote, lists the tools and calls list_sandboxes and execute_command.
func TestTypeScriptClient(t *testing.T) {
	e := newEnv(t)
	dir, err := InstallTSClient(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// node's fetch sets the Host header from the URL: a local forwarder
	// gives the requests the MCP host on their way to the router.
	fwd := startHostForwarder(t, e.router.HTTPAddr, mcpHost)
	res, err := RunTSClient(t.Context(), dir, "http://"+fwd+"/mcp", e.alice, []TSStep{
		{Op: "listTools"},
		{Op: "callTool", Name: "list_sandboxes", Arguments: map[string]any{"namespace": teamA}},
		{Op: "callTool", Name: "execute_command", Arguments: map[string]any{"namespace": teamA, "name": "alpha", "command": "echo from typescript"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tools struct {
		Tools []struct{ Name string } `json:"tools"`
	}
	if err := res.Decode(0, &tools); err != nil || len(tools.Tools) != 12 {
		t.Errorf("listTools: %v %+v", err, tools)
	}
	type toolResult struct {
		IsError bool `json:"isError"`
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	}
	var list, exec toolResult
	if err := res.Decode(1, &list); err != nil || list.IsError || len(list.Content) == 0 || !strings.Contains(list.Content[0].Text, `"name": "alpha"`) {
		t.Errorf("list_sandboxes: %v %+v", err, list)
	}
	if err := res.Decode(2, &exec); err != nil || exec.IsError || len(exec.Content) == 0 || !strings.Contains(exec.Content[0].Text, `from typescript\n`) {
		t.Errorf("execute_command: %v %+v", err, exec)
	}
	t.Logf("the TypeScript SDK negotiated protocol %s", res.ProtocolVersion)
}

// TestEveryToolAsBothIdentities runs each of the twelve tools as alice
// and as bob on a sandbox only alice may reach (team-a/alpha), one in a
// namespace neither may reach (team-b/delta), and the one bob may reach
// (team-a/beta): what a caller may not reach is invisible, whatever the
// tool; what it may reach but not change, Kubernetes refuses by RBAC.
func TestEveryToolAsBothIdentities(t *testing.T) {
	e := newEnv(t)
	sessions := map[string]*sdk.ClientSession{"alice": e.connect(t, e.alice, nil), "bob": e.connect(t, e.bob, nil)}
	args := func(ns, name string) map[string]map[string]any {
		ref := func(kv ...any) map[string]any {
			m := map[string]any{"namespace": ns, "name": name}
			for i := 0; i < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		}
		return map[string]map[string]any{
			"get_sandbox":     ref(),
			"resume_sandbox":  ref(),
			"suspend_sandbox": ref(),
			"execute_command": ref("command", "hostname"),
			"read_file":       ref("path", "nothing-here"),
			"write_file":      ref("path", "probe.txt", "content", "x"),
			"list_files":      ref("path", "."),
			"file_exists":     ref("path", "probe.txt"),
			"preview_url":     ref("port", 8888),
			"delete_sandbox":  ref(),
		}
	}
	invisible := func(ns, name string) string { return "no sandbox " + ns + "/" + name + " that you may reach" }
	rbac := "Kubernetes refused to"

	type expect struct {
		who, ns, name string
		// want: "" succeeds; anything else is a substring of the refusal.
		want map[string]string
	}
	all := func(s string) map[string]string {
		m := map[string]string{}
		for tool := range args("x", "y") {
			m[tool] = s
		}
		return m
	}
	bobOnBeta := map[string]string{
		"get_sandbox": "", "execute_command": "", "write_file": "", "list_files": "", "file_exists": "", "preview_url": "",
		"read_file":      "the sandbox's runtime answered 404",
		"resume_sandbox": rbac, "suspend_sandbox": rbac, "delete_sandbox": rbac,
	}
	for _, c := range []expect{
		{"bob", teamA, "alpha", all(invisible(teamA, "alpha"))},
		{"bob", teamB, "delta", all(invisible(teamB, "delta"))},
		{"alice", teamB, "delta", all(invisible(teamB, "delta"))},
		{"bob", teamA, "beta", bobOnBeta},
	} {
		for tool, a := range args(c.ns, c.name) {
			text, isErr := call(t, sessions[c.who], tool, a)
			switch want := c.want[tool]; {
			case want == "" && isErr:
				t.Errorf("%s %s on %s/%s: refused: %s", c.who, tool, c.ns, c.name, text)
			case want != "" && (!isErr || !strings.Contains(text, want)):
				t.Errorf("%s %s on %s/%s: %q, want a refusal with %q", c.who, tool, c.ns, c.name, text, want)
			}
		}
	}
	// create_sandbox and list_sandboxes name no existing sandbox: bob may
	// not create, and lists only beta (TestToolsActForTheCaller); alice
	// creates in team-a only.
	if text := mustRefuse(t, sessions["alice"], "create_sandbox", map[string]any{"namespace": teamB, "template": "python", "name": "elsewhere"}); !strings.Contains(text, rbac) {
		t.Errorf("alice creates in team-b: %s", text)
	}
}
