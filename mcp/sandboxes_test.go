package mcp

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// What a caller sees (sandboxes.go), with Principals made by a real
// access.Checker.

// listNames is list_sandboxes' answer as "ns/name" and its truncation.
func listNames(t *testing.T, e *env, c *caller, args string) ([]string, bool) {
	t.Helper()
	res, err := e.call(context.Background(), c, "list_sandboxes", args)
	if err != nil {
		t.Fatalf("list_sandboxes %s: %v", args, err)
	}
	m := structured(t, res)
	var names []string
	for _, s := range m["sandboxes"].([]any) {
		s := s.(map[string]any)
		names = append(names, s["namespace"].(string)+"/"+s["name"].(string))
		if s["uri"] != "sandbox://"+s["namespace"].(string)+"/"+s["name"].(string) {
			t.Errorf("uri %v", s["uri"])
		}
	}
	if m["count"] != float64(len(names)) {
		t.Errorf("count %v of %d", m["count"], len(names))
	}
	return names, m["truncated"] == true
}

func visibilityEnv(t *testing.T, limits Limits) *env {
	e := newEnv(t, limits,
		running("team-a", "a1"), running("team-a", "a2"), running("team-a", "a3"),
		running("team-b", "b1"), running("team-b", "b2"),
		running("team-c", "c1"))
	e.auth.user("tok-alice", "alice", "team-a/") // the whole namespace
	e.auth.user("tok-carol", "carol", "team-b/b2", "team-c/c1", "team-c/gone")
	return e
}

func TestVisibleWholesaleAndPerSandbox(t *testing.T) {
	e := visibilityEnv(t, Limits{})
	cases := []struct {
		token, args string
		want        []string
		reviews     int // Reaches calls
	}{
		// A namespace granted as a whole costs one review for all its
		// sandboxes; the others one each.
		{"tok-alice", `{}`, []string{"team-a/a1", "team-a/a2", "team-a/a3"}, 3 + 2 + 1},
		{"tok-alice", `{"namespace":"team-a"}`, []string{"team-a/a1", "team-a/a2", "team-a/a3"}, 1},
		{"tok-alice", `{"namespace":"team-b"}`, nil, 1 + 2},
		{"tok-alice", `{"namespace":"nowhere"}`, nil, 0},
		{"tok-carol", `{}`, []string{"team-b/b2", "team-c/c1"}, 3 + 6},
		{"tok-carol", `{"namespace":"team-c"}`, []string{"team-c/c1"}, 2},
		{"tok-bob", `{}`, nil, 3 + 6},
	}
	for _, tc := range cases {
		c := e.caller(t, tc.token)
		e.access.reset()
		got, truncated := listNames(t, e, c, tc.args)
		if !slices.Equal(got, tc.want) || truncated {
			t.Errorf("%s %s: %v (truncated %v), want %v", tc.token, tc.args, got, truncated, tc.want)
		}
		if n := len(e.access.reviews()); n != tc.reviews {
			t.Errorf("%s %s: %d reviews, want %d: %v", tc.token, tc.args, n, tc.reviews, e.access.reviews())
		}
	}
}

func TestListFilters(t *testing.T) {
	e := visibilityEnv(t, Limits{})
	e.sb.setState(resolver.Key{Namespace: "team-a", Name: "a2"}, resolver.StateSuspended)
	c := e.caller(t, "tok-alice")
	if got, _ := listNames(t, e, c, `{"state":"suspended"}`); !slices.Equal(got, []string{"team-a/a2"}) {
		t.Errorf("suspended: %v", got)
	}
	if got, _ := listNames(t, e, c, `{"state":"running"}`); !slices.Equal(got, []string{"team-a/a1", "team-a/a3"}) {
		t.Errorf("running: %v", got)
	}
	// The label selector is the API server's answer, as alice.
	e.cluster.names = []string{"a3", "a9"}
	if got, _ := listNames(t, e, c, `{"namespace":"team-a","label_selector":"app=web"}`); !slices.Equal(got, []string{"team-a/a3"}) {
		t.Errorf("labelled: %v", got)
	}
	if calls := e.cluster.recorded(); len(calls) != 1 || calls[0] != (clusterCall{op: "list", token: "tok-alice", namespace: "team-a", selector: "app=web", limit: maxListed + 1}) {
		t.Errorf("cluster calls %+v", calls)
	}
	for _, args := range []string{
		`{"state":"unknown"}`, `{"state":"Running"}`, `{"state":"asleep"}`,
		`{"namespace":"Team-A"}`, `{"namespace":"a/b"}`,
		`{"label_selector":"app=web"}`, // needs a namespace
		`{"namespace":"team-a","label_selector":"app=(("}`,
		`{"namespace":"team-a","label_selector":"` + strings.Repeat("a", 1025) + `"}`,
		`{"namespaces":["team-a"]}`,
	} {
		if res, err := e.call(context.Background(), c, "list_sandboxes", args); err == nil {
			t.Errorf("%s: %s", args, text(res))
		}
	}
}

// TestInvisibleIsMissing: a sandbox the caller may not reach and one that
// does not exist get the same answer, from every tool, and neither call
// reaches the sandbox or the cluster.
func TestInvisibleIsMissing(t *testing.T) {
	e := visibilityEnv(t, Limits{})
	e.auth.user("tok-dave", "dave", "team-b/") // team-b wholesale: reaches names that do not exist
	tools := map[string]string{
		"get_sandbox":     ``,
		"resume_sandbox":  ``,
		"suspend_sandbox": ``,
		"delete_sandbox":  ``,
		"execute_command": `,"command":"ls"`,
		"read_file":       `,"path":"/a"`,
		"write_file":      `,"path":"/a","content":"x"`,
		"list_files":      `,"path":"/"`,
		"file_exists":     `,"path":"/a"`,
		"preview_url":     `,"port":3000`,
	}
	cases := []struct {
		token, ns, name, why string
	}{
		{"tok-alice", "team-b", "b1", "exists, not reachable"},
		{"tok-alice", "team-b", "zz", "missing, not reachable"},
		{"tok-carol", "team-c", "gone", "granted by name, missing"},
		{"tok-dave", "team-b", "zz", "granted wholesale, missing"},
		{"tok-bob", "team-a", "a1", "exists, reaches nothing"},
	}
	for tool, extra := range tools {
		answers := make(map[string]string)
		for _, tc := range cases {
			e.runtime.reset()
			e.cluster.reset()
			c := e.caller(t, tc.token)
			args := fmt.Sprintf(`{"namespace":%q,"name":%q%s}`, tc.ns, tc.name, extra)
			res, err := e.call(context.Background(), c, tool, args)
			if err == nil {
				t.Errorf("%s %s (%s): %s", tool, args, tc.why, text(res))
				continue
			}
			// The same words, but for the name asked about.
			answers[strings.ReplaceAll(err.Error(), tc.ns+"/"+tc.name, "NS/NAME")] = tc.why
			if n := len(e.runtime.requests()); n != 0 {
				t.Errorf("%s (%s): %d requests reached the sandbox", tool, tc.why, n)
			}
			if calls := e.cluster.recorded(); len(calls) != 0 {
				t.Errorf("%s (%s): cluster calls %+v", tool, tc.why, calls)
			}
		}
		if len(answers) != 1 {
			t.Errorf("%s: the answers differ: %v", tool, answers)
		}
		for a := range answers {
			if a != "no sandbox NS/NAME that you may reach: check the name with list_sandboxes" {
				t.Errorf("%s: answer %q", tool, a)
			}
		}
	}
	if len(e.previews.recorded()) != 0 {
		t.Errorf("previews minted: %v", e.previews.recorded())
	}
}

// TestReviewBudget: where a caller reaches sandboxes one by one, a listing
// costs at most Reviews reviews, and says it was cut.
func TestReviewBudget(t *testing.T) {
	var sbs []resolver.Result
	for i := range 10 {
		sbs = append(sbs, running("team-x", fmt.Sprintf("s%02d", i)))
	}
	e := newEnv(t, Limits{Reviews: 4}, sbs...)
	e.auth.user("tok-erin", "erin", "team-x/s00", "team-x/s02", "team-x/s07")
	c := e.caller(t, "tok-erin")
	e.access.reset()
	res, err := e.call(context.Background(), c, "list_sandboxes", `{}`)
	if err != nil {
		t.Fatal(err)
	}
	m := structured(t, res)
	if m["truncated"] != true || !strings.Contains(m["note"].(string), "filter by namespace") {
		t.Errorf("answer %v", m)
	}
	// The budget covers the same sandboxes whatever order the resolver
	// lists them in (its Snapshot is a map's): the namespace's review, then
	// the first by name, s00-s02, of which erin reaches s00 and s02. Otherwise each listing, and each
	// refresh of the resources, reviews another random subset: the answer
	// changes from call to call, and resources come and go.
	if got, _ := listNames(t, e, c, `{}`); !slices.Equal(got, []string{"team-x/s00", "team-x/s02"}) {
		t.Errorf("within the budget: %v, want [team-x/s00 team-x/s02] (the first 3 by name)", got)
	}
	e.access.reset()
	listNames(t, e, c, `{}`)
	if n := len(e.access.reviews()); n != 4 { // the namespace's and three sandboxes'
		t.Errorf("%d reviews: %v", n, e.access.reviews())
	}
	// The budget is the Handler's: the same for the resources.
	list, truncated, err := e.h.visible(context.Background(), c.principal, "", 100)
	if err != nil || truncated || len(list) != 3 {
		t.Errorf("with budget 100: %d, %v, %v", len(list), truncated, err)
	}
}

// TestWarmPoolHidden: an unclaimed warm-pool pod, listed by Snapshot
// under its pod's name and UID, is nobody's sandbox: not listed, even
// when its name is a sandbox's, and not reachable by name.
func TestWarmPoolHidden(t *testing.T) {
	e := newEnv(t, Limits{}, running("team-a", "a1"))
	e.sb.warm = []resolver.Result{
		{State: resolver.StateRunning, Namespace: "team-a", Name: "pool-x7k2p", UID: "pod-uid-1"},
		{State: resolver.StateRunning, Namespace: "team-a", Name: "a1", UID: "pod-uid-2"}, // a pod named like a sandbox
	}
	e.auth.user("tok-alice", "alice", "team-a/")
	c := e.caller(t, "tok-alice")
	if got, _ := listNames(t, e, c, `{}`); !slices.Equal(got, []string{"team-a/a1"}) {
		t.Errorf("listed %v", got)
	}
	res, err := e.call(context.Background(), c, "get_sandbox", `{"namespace":"team-a","name":"a1"}`)
	if err != nil || structured(t, res)["uid"] != "uid-team-a-a1" {
		t.Errorf("get a1: %s, %v", text(res), err)
	}
	if _, err := e.call(context.Background(), c, "get_sandbox", `{"namespace":"team-a","name":"pool-x7k2p"}`); err == nil ||
		err.Error() != notVisible(resolver.Key{Namespace: "team-a", Name: "pool-x7k2p"}).Error() {
		t.Errorf("get the pool pod: %v", err)
	}
}

// TestScopedCaller: a scoped token's caller sees its one sandbox, and
// nothing that writes to the cluster.
func TestScopedCaller(t *testing.T) {
	e := visibilityEnv(t, Limits{})
	a1 := resolver.Key{Namespace: "team-a", Name: "a1"}
	c := e.caller(t, scopedToken(t, e.priv, a1, "uid-team-a-a1"))
	if k, ok := c.principal.Sandbox(); !ok || k != a1 || c.principal.Kubernetes() {
		t.Fatalf("principal %+v", c.principal)
	}
	if got, _ := listNames(t, e, c, `{}`); !slices.Equal(got, []string{"team-a/a1"}) {
		t.Errorf("listed %v", got)
	}
	if got, _ := listNames(t, e, c, `{"namespace":"team-b"}`); len(got) != 0 {
		t.Errorf("team-b: %v", got)
	}
	if res, err := e.call(context.Background(), c, "execute_command", `{"namespace":"team-a","name":"a1","command":"ls"}`); err != nil {
		t.Errorf("execute on its sandbox: %v", err)
	} else if reqs := e.runtime.requests(); len(reqs) != 1 || !strings.HasPrefix(reqs[0].Header.Get("Authorization"), "Bearer v2.") {
		t.Errorf("%s; requests %+v", text(res), reqs)
	}
	if _, err := e.call(context.Background(), c, "get_sandbox", `{"namespace":"team-a","name":"a2"}`); err == nil ||
		err.Error() != notVisible(resolver.Key{Namespace: "team-a", Name: "a2"}).Error() {
		t.Errorf("another sandbox: %v", err)
	}
	for tool, args := range map[string]string{
		"resume_sandbox": `{"namespace":"team-a","name":"a1"}`, "suspend_sandbox": `{"namespace":"team-a","name":"a1"}`,
		"delete_sandbox": `{"namespace":"team-a","name":"a1"}`, "create_sandbox": `{"namespace":"team-a","template":"python"}`,
		"list_sandboxes": `{"namespace":"team-a","label_selector":"app=web"}`,
	} {
		if _, err := e.call(context.Background(), c, tool, args); err == nil || !strings.Contains(err.Error(), "Kubernetes token") {
			t.Errorf("%s: %v", tool, err)
		}
	}
	if calls := e.cluster.recorded(); len(calls) != 0 {
		t.Errorf("cluster calls %+v", calls)
	}
	// The sandbox recreated under its name is another: the v2 token's UID
	// no longer matches, and it sees nothing.
	e.sb.set(resolver.Result{State: resolver.StateRunning, Namespace: "team-a", Name: "a1", UID: "uid-new"})
	if got, _ := listNames(t, e, c, `{}`); len(got) != 0 {
		t.Errorf("after recreation: %v", got)
	}
	// A scoped token for a sandbox that does not exist sees nothing.
	c2 := e.caller(t, scopedToken(t, e.priv, resolver.Key{Namespace: "team-a", Name: "zz"}, "uid-zz"))
	if got, _ := listNames(t, e, c2, `{}`); len(got) != 0 {
		t.Errorf("missing: %v", got)
	}
}

// TestAccessUnavailable: when the API server does not answer the
// reviews, the tools say so (and never that a sandbox is missing).
func TestAccessUnavailable(t *testing.T) {
	e := visibilityEnv(t, Limits{})
	c := e.caller(t, "tok-alice")
	e.auth.setDown(true)
	for tool, args := range map[string]string{
		"list_sandboxes": `{}`, "get_sandbox": `{"namespace":"team-a","name":"a1"}`,
		"execute_command": `{"namespace":"team-a","name":"a1","command":"ls"}`,
	} {
		if _, err := e.call(context.Background(), c, tool, args); err == nil || err.Error() != errAccessUnavailable.Error() {
			t.Errorf("%s: %v", tool, err)
		}
	}
	e.auth.setDown(false)
	e.sb.synced = false
	if _, err := e.call(context.Background(), c, "get_sandbox", `{"namespace":"team-a","name":"a1"}`); err == nil || !strings.Contains(err.Error(), "still loading") {
		t.Errorf("unsynced: %v", err)
	}
}

// TestLifecycleTools: the writes go to the cluster with the caller's own
// token, after the visibility check, and wait for the resolver to say.
func TestLifecycleTools(t *testing.T) {
	e := visibilityEnv(t, Limits{})
	c := e.caller(t, "tok-alice")
	ctx := context.Background()
	a1 := resolver.Key{Namespace: "team-a", Name: "a1"}

	res, err := e.call(ctx, c, "suspend_sandbox", `{"namespace":"team-a","name":"a1"}`)
	if err != nil || structured(t, res)["state"] != "suspended" {
		t.Fatalf("suspend: %s, %v", text(res), err)
	}
	res, err = e.call(ctx, c, "resume_sandbox", `{"namespace":"team-a","name":"a1","wait_seconds":30}`)
	if err != nil || structured(t, res)["state"] != "running" {
		t.Fatalf("resume: %s, %v", text(res), err)
	}
	// Resuming a running sandbox still asks RBAC (a patch that changes
	// nothing), so the answer never depends on its state.
	if _, err := e.call(ctx, c, "resume_sandbox", `{"namespace":"team-a","name":"a1"}`); err != nil {
		t.Fatal(err)
	}
	res, err = e.call(ctx, c, "create_sandbox", `{"namespace":"team-a","template":"python.v3","name":"new1"}`)
	if err != nil || structured(t, res)["state"] != "running" {
		t.Fatalf("create: %s, %v", text(res), err)
	}
	res, err = e.call(ctx, c, "create_sandbox", `{"namespace":"team-a","template":"python"}`)
	if err != nil {
		t.Fatalf("create, generated name: %v", err)
	}
	generated := structured(t, res)["name"].(string)
	if !strings.HasPrefix(generated, "sandbox-") || !resolver.IsDNSLabel(generated) {
		t.Errorf("generated name %q", generated)
	}
	res, err = e.call(ctx, c, "delete_sandbox", `{"namespace":"team-a","name":"new1"}`)
	if err != nil || structured(t, res)["deleted"] != true {
		t.Fatalf("delete: %s, %v", text(res), err)
	}
	want := []clusterCall{
		{op: "suspend", token: "tok-alice", namespace: "team-a", name: "a1", suspended: true},
		{op: "suspend", token: "tok-alice", namespace: "team-a", name: "a1", suspended: false},
		{op: "suspend", token: "tok-alice", namespace: "team-a", name: "a1", suspended: false},
		{op: "create", token: "tok-alice", namespace: "team-a", name: "new1", template: "python.v3"},
		{op: "create", token: "tok-alice", namespace: "team-a", name: generated, template: "python"},
		{op: "delete", token: "tok-alice", namespace: "team-a", name: "new1"},
	}
	if got := e.cluster.recorded(); !slices.Equal(got, want) {
		t.Errorf("cluster calls\n got %+v\nwant %+v", got, want)
	}
	if e.sb.Lookup(a1).State != resolver.StateRunning {
		t.Error("a1 is not running")
	}

	// The API server's refusals, as the model reads them.
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("patch: %w", ErrForbidden), "Kubernetes refused to suspend team-a/a1 for you (RBAC)"},
		{fmt.Errorf("patch: %w", ErrNotFound), notVisible(a1).Error()},
		{fmt.Errorf("patch: %w", ErrConflict), "could not suspend team-a/a1: patch: conflict"},
		{fmt.Errorf("patch: %w", ErrInvalid), "as invalid"},
		{fmt.Errorf("patch: %w", ErrUnavailable), "the Kubernetes API did not answer"},
	} {
		e.cluster.err = tc.err
		if _, err := e.call(ctx, c, "suspend_sandbox", `{"namespace":"team-a","name":"a1"}`); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v", tc.err, err)
		}
	}
	e.cluster.err = fmt.Errorf("create: %w", ErrNotFound)
	if _, err := e.call(ctx, c, "create_sandbox", `{"namespace":"team-a","template":"python"}`); err == nil || !strings.Contains(err.Error(), "no SandboxClaim API") {
		t.Errorf("create without the API: %v", err)
	}
	e.cluster.err = nil

	for tool, args := range map[string]string{
		"create_sandbox": `{"namespace":"team-a","template":"Python"}`,
		"resume_sandbox": `{"namespace":"team-a","name":"a1","wait_seconds":301}`,
	} {
		if _, err := e.call(ctx, c, tool, args); err == nil {
			t.Errorf("%s %s accepted", tool, args)
		}
	}
}

// TestWaitTimesOut: resume_sandbox waits for the resolver, and says so
// when the sandbox is not running at the end of the wait.
func TestWaitTimesOut(t *testing.T) {
	e := visibilityEnv(t, Limits{})
	e.cluster.sb = nil // the controller does nothing
	e.sb.setState(resolver.Key{Namespace: "team-a", Name: "a1"}, resolver.StateSuspended)
	c := e.caller(t, "tok-alice")
	res, err := e.call(context.Background(), c, "resume_sandbox", `{"namespace":"team-a","name":"a1","wait_seconds":1}`)
	if err != nil {
		t.Fatal(err)
	}
	m := structured(t, res)
	if m["sandbox"].(map[string]any)["state"] != "suspended" || !strings.Contains(m["note"].(string), "not running after 1s") {
		t.Errorf("answer %v", m)
	}
}

func TestPreviewURL(t *testing.T) {
	e := visibilityEnv(t, Limits{})
	c := e.caller(t, "tok-alice")
	res, err := e.call(context.Background(), c, "preview_url", `{"namespace":"team-a","name":"a1","port":3000,"ttl_seconds":600}`)
	if err != nil {
		t.Fatal(err)
	}
	if m := structured(t, res); !strings.HasPrefix(m["url"].(string), "https://8888-a1.team-a.") || m["port"] != float64(3000) {
		t.Errorf("answer %v", m)
	}
	if reqs := e.previews.recorded(); len(reqs) != 1 || reqs[0].Namespace != "team-a" || reqs[0].Name != "a1" ||
		!slices.Equal(reqs[0].Ports, []uint16{3000}) || reqs[0].TTL != "600s" {
		t.Errorf("mint requests %+v", reqs)
	}
	for _, args := range []string{`"port":70000`, `"port":-1`, `"ttl_seconds":-1`, `"ttl_seconds":5`, `"ttl_seconds":86401`} {
		if _, err := e.call(context.Background(), c, "preview_url", `{"namespace":"team-a","name":"a1",`+args+`}`); err == nil {
			t.Errorf("%s accepted", args)
		}
	}
	// The minter's refusal that means "not yours" is the not-visible answer.
	e.previews.err = &access.Error{Status: http.StatusForbidden, Code: access.CodeForbidden, Detail: "no"}
	if _, err := e.call(context.Background(), c, "preview_url", `{"namespace":"team-a","name":"a1"}`); err == nil ||
		err.Error() != notVisible(resolver.Key{Namespace: "team-a", Name: "a1"}).Error() {
		t.Errorf("forbidden: %v", err)
	}
	e.previews.err = &access.Error{Status: http.StatusBadRequest, Code: "bad_ttl", Detail: "ttl is below 1m"}
	if _, err := e.call(context.Background(), c, "preview_url", `{"namespace":"team-a","name":"a1","ttl_seconds":30}`); err == nil ||
		!strings.Contains(err.Error(), "ttl is below 1m") {
		t.Errorf("bad ttl: %v", err)
	}
}

// TestCreateAdoptsWarmSandbox: a claim whose controller adopts a warm
// sandbox (which keeps its own name) answers with that sandbox, not a
// name that never appears.
func TestCreateAdoptsWarmSandbox(t *testing.T) {
	e := visibilityEnv(t, Limits{})
	e.cluster.adopt = map[string]string{"mine": "warm-7"}
	c := e.caller(t, "tok-alice")
	res, err := e.call(context.Background(), c, "create_sandbox", `{"namespace":"team-a","template":"python","name":"mine"}`)
	if err != nil {
		t.Fatal(err)
	}
	if m := structured(t, res); m["name"] != "warm-7" || m["state"] != "running" {
		t.Errorf("create_sandbox answered %v", m)
	}
}
