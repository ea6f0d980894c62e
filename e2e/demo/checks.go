package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
)

// check is one request the demo suggests: the command it prints, and the
// same request sent from Go with the answer it must get.
type check struct {
	note []string // comment lines printed above the command
	// curl is the command; empty for a step that sends nothing but
	// waits for something to happen (do watches for it), or that a
	// client of the demo's own makes (the MCP SDK client's calls).
	curl string
	want string // the expected answer, for a failure message
	// do sends the request and describes the answer; ok says whether it
	// was the expected one.
	do func(ctx context.Context) (got string, ok bool)
	// timed shows how long the answer took (held requests, waits).
	timed bool
}

// request is an HTTP request to the router or the API server.
type request struct {
	method, url, host string
	headers           [][2]string
	body              string
}

// curl renders r as a curl command (extra flags first, shell suffix last).
func (r request) curl(flags, suffix string) string {
	var b strings.Builder
	b.WriteString("curl -s")
	if flags != "" {
		b.WriteString(" " + flags)
	}
	if r.host != "" {
		b.WriteString(" -H 'Host: " + r.host + "'")
	}
	for _, h := range r.headers {
		b.WriteString(" -H '" + h[0] + ": " + h[1] + "'")
	}
	if r.method != "" && r.method != http.MethodGet && !(r.method == http.MethodPost && r.body != "") {
		b.WriteString(" -X " + r.method)
	}
	if r.body != "" {
		b.WriteString(" --data-binary '" + r.body + "'")
	}
	b.WriteString(" " + r.url)
	if suffix != "" {
		b.WriteString(" " + suffix)
	}
	return b.String()
}

// send sends r and returns the status and the body (with stream, only up
// to its first "data:" line).
func (r request) send(ctx context.Context, client *http.Client, stream bool) (int, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.url, body)
	if err != nil {
		return 0, "", err
	}
	req.Host = r.host
	for _, h := range r.headers {
		req.Header.Set(h[0], h[1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if stream {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "data:") {
				return resp.StatusCode, line, nil
			}
		}
		return resp.StatusCode, "", fmt.Errorf("stream ended without an event: %v", sc.Err())
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(data), err
}

// expect is the answer a request must get.
type expect struct {
	status   int
	code     string // the error's "code"
	sandbox  string // the backend's "sandbox" (which sandbox answered)
	contains string // a substring of the body
	stream   bool   // read the first event of a stream only
	// statusOnly shows only the status, as the printed command does.
	statusOnly bool
}

func (x expect) String() string {
	s := fmt.Sprint(x.status)
	switch {
	case x.code != "":
		s += " " + x.code
	case x.sandbox != "":
		s += " from " + x.sandbox
	case x.contains != "":
		s += fmt.Sprintf(" with %q", x.contains)
	}
	return s
}

// httpCheck is a check of one request. display, when not empty, is printed
// instead of the rendered request (API server requests, which print shell
// variables in place of the token and the URL).
func httpCheck(client *http.Client, note []string, r request, flags, suffix, display string, x expect) check {
	if display == "" {
		display = r.curl(flags, suffix)
	}
	return check{note: note, curl: display, want: x.String(), do: func(ctx context.Context) (string, bool) {
		status, body, err := r.send(ctx, client, x.stream)
		if err != nil {
			return err.Error(), false
		}
		got := fmt.Sprintf("%d %s", status, excerpt(body, x.contains))
		if x.statusOnly {
			got = fmt.Sprint(status)
		}
		ok := status == x.status
		var m struct{ Code, Sandbox string }
		if x.code != "" || x.sandbox != "" {
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				return got, false
			}
		}
		ok = ok && (x.code == "" || m.Code == x.code) && (x.sandbox == "" || m.Sandbox == x.sandbox) &&
			strings.Contains(body, x.contains)
		return got, ok
	}}
}

// excerpt is the body's first line (or the first one with want in it),
// cut to fit a terminal line.
func excerpt(body, want string) string {
	body = strings.TrimSpace(body)
	if i := strings.Index(body, want); want != "" && i >= 0 {
		if j := strings.LastIndexByte(body[:i], '\n'); j >= 0 {
			body = body[j+1:]
		}
	}
	if i := strings.IndexByte(body, '\n'); i >= 0 {
		body = body[:i] + " ..."
	}
	if len(body) > 110 {
		body = body[:107] + "..."
	}
	return body
}

// demoChecks are the requests the demo prints, in order. Near the end
// they suspend and resume alpha through the API server; the last ones
// call sandboxes over xDS with grpc-go (xds.go).
func demoChecks(e *env) []check {
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	proxy := "http://" + e.http
	hdr := func(kv ...string) [][2]string {
		var out [][2]string
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, [2]string{kv[i], kv[i+1]})
		}
		return out
	}
	alpha := expect{status: 200, sandbox: "alpha"}
	port := e.http[strings.LastIndexByte(e.http, ':')+1:]

	cs := []check{
		httpCheck(client, []string{
			"by host name: <sandbox>.<namespace>." + baseDomain,
			"(curl resolves *.localhost itself, so this works too: curl http://alpha.default." + baseDomain + ":" + port + "/)",
		}, request{url: proxy + "/", host: "alpha.default." + baseDomain}, "", "", "", alpha),
		httpCheck(client, nil, request{url: proxy + "/", host: "beta.team-a." + baseDomain}, "", "", "",
			expect{status: 200, sandbox: "beta"}),
		httpCheck(client, []string{"with the sandbox's port in the host name: <port>-<sandbox>.<namespace>." + baseDomain},
			request{url: proxy + "/", host: "8888-alpha.default." + baseDomain}, "", "", "", alpha),

		httpCheck(client, []string{"by header, as existing SDKs send it (namespace defaults to default)"},
			request{url: proxy + "/", headers: hdr("X-Sandbox-ID", "alpha")}, "", "", "", alpha),
		httpCheck(client, nil, request{url: proxy + "/", headers: hdr("X-Sandbox-ID", "beta", "X-Sandbox-Namespace", "team-a")}, "", "", "",
			expect{status: 200, sandbox: "beta"}),

		httpCheck(client, []string{"a request body, streamed both ways"},
			request{method: http.MethodPost, url: proxy + "/echo", headers: hdr("X-Sandbox-ID", "alpha"), body: "hello, sandbox"}, "", "", "",
			expect{status: 200, contains: "hello, sandbox"}),
		httpCheck(client, []string{"server-sent events, flushed as they arrive (Ctrl-C ends it)"},
			request{url: proxy + "/sse", headers: hdr("X-Sandbox-ID", "alpha")}, "-N", "", "",
			expect{status: 200, contains: "data: 0", stream: true}),
		wsCheck(e, client),

		httpCheck(client, []string{"a warm-pool pod: reachable by its UID only, never by name alone"},
			request{url: proxy + "/", headers: hdr("X-Sandbox-ID", e.warmPod, "X-Sandbox-UID", e.warmUID)}, "", "", "",
			expect{status: 200, contains: `"pod":"` + e.warmPod + `"`}),
		httpCheck(client, nil, request{url: proxy + "/", headers: hdr("X-Sandbox-ID", e.warmPod)}, "", "", "",
			expect{status: 404, code: "sandbox_not_found"}),

		wakeCheck(client, []string{
			"a suspended sandbox (scale to zero): held ~" + seconds(e.startDelay) + " while the router resumes sleepy, then 200",
			"(the router patches spec.operatingMode to Running; the sim's pod start delay is " + seconds(e.startDelay) + ")",
		}, sleepy(e), "sleepy", &e.sleepy),
		httpCheck(client, []string{"an unknown sandbox, and an invalid key"},
			request{url: proxy + "/", headers: hdr("X-Sandbox-ID", "nobody")}, "", "", "",
			expect{status: 404, code: "sandbox_not_found"}),
		httpCheck(client, nil, request{url: proxy + "/", headers: hdr("X-Sandbox-ID", "Not_Valid")}, "", "", "",
			expect{status: 400, code: "invalid_sandbox_id"}),

		httpCheck(client, []string{"health on the proxy port; readiness (caches synced) and metrics on the admin port"},
			request{url: proxy + "/healthz"}, "", "", "", expect{status: 200, contains: `"ok"`}),
		httpCheck(client, nil, request{url: "http://" + e.admin + "/readyz"}, "", "", "", expect{status: 200}),
		httpCheck(client, nil, request{url: "http://" + e.admin + "/metrics"}, "", "| grep '^sandbox_router_requests_total'", "",
			expect{status: 200, contains: "sandbox_router_requests_total{"}),
		activatorMetricsCheck(client, e),
	}
	cs = append(cs, accessChecks(e)...)
	cs = append(cs, mcpChecks(e)...)
	cs = append(cs, dashboardChecks(e)...)
	cs = append(cs, suspendChecks(e, client)...)
	if e.smoke {
		// Interactively the user tries this (printIdleHint) while
		// reportIdle says what happens.
		cs = append(cs, idleChecks(e, client)...)
	}
	// Last: they touch neither sleepy nor alpha's pod.
	cs = append(cs, xdsChecks(e)...)
	return cs
}

// wsCheck is the WebSocket echo at /ws. curl shows the handshake passing
// through (101, then the connection stays open until --max-time); the
// check sends a message and reads it back.
func wsCheck(e *env, client *http.Client) check {
	r := request{url: "http://" + e.http + "/ws", headers: [][2]string{
		{"Connection", "Upgrade"}, {"Upgrade", "websocket"}, {"Sec-WebSocket-Version", "13"},
		{"Sec-WebSocket-Key", "c2FuZGJveC1yb3V0ZXIhIQ=="}, {"X-Sandbox-ID", "alpha"},
	}}
	return check{
		note: []string{"a WebSocket echo at /ws: curl shows the upgrade passing through (101) and gives up after 2 s;",
			"a WebSocket client talks to it, e.g. websocat -H 'X-Sandbox-ID: alpha' ws://" + e.http + "/ws"},
		curl: r.curl("-i -N --max-time 2", ""),
		want: "101 and the message echoed",
		do: func(ctx context.Context) (string, bool) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			conn, resp, err := websocket.Dial(ctx, "ws://"+e.http+"/ws", &websocket.DialOptions{
				HTTPClient: client, HTTPHeader: http.Header{"X-Sandbox-Id": {"alpha"}},
			})
			if err != nil {
				return err.Error(), false
			}
			defer conn.CloseNow()
			msg := []byte("hello over websocket")
			if err := conn.Write(ctx, websocket.MessageText, msg); err != nil {
				return err.Error(), false
			}
			_, got, err := conn.Read(ctx)
			if err != nil {
				return err.Error(), false
			}
			conn.Close(websocket.StatusNormalClosure, "")
			return fmt.Sprintf("%d, echoed %q", resp.StatusCode, got), resp.StatusCode == http.StatusSwitchingProtocols && bytes.Equal(got, msg)
		},
	}
}

// suspendChecks suspend alpha by patching the Sandbox through the API
// server with the admin token (no kubectl needed), wait until the sim
// reports it suspended, and show the next request waking it.
func suspendChecks(e *env, client *http.Client) []check {
	api, err := e.c.HTTPClient()
	if err != nil {
		return []check{{curl: "(API server client)", want: "a client", do: func(context.Context) (string, bool) { return err.Error(), false }}}
	}
	path := "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/alpha"
	patch := request{method: http.MethodPatch, url: e.c.URL + path, headers: [][2]string{
		{"Authorization", "Bearer " + e.c.AdminToken}, {"Content-Type", "application/merge-patch+json"},
	}, body: `{"spec":{"operatingMode":"Suspended"}}`}
	display := `curl -s --cacert "$CA" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/merge-patch+json' -X PATCH` +
		` --data-binary '{"spec":{"operatingMode":"Suspended"}}' "$API` + path + `" -o /dev/null -w '%{http_code}\n'`
	suspend := httpCheck(api, []string{
		"suspend alpha through the API server, as its owner or a controller would (the sim deletes its pod):",
		"API=" + e.c.URL + " CA=" + e.c.CAFile + " TOKEN=$(cat " + e.adminTokenFile + ")",
		"(with kubectl: export KUBECONFIG=" + e.c.KubeconfigPath + "; kubectl get sandboxes -A)",
	}, patch, "", "", display, expect{status: 200, contains: `"Suspended"`, statusOnly: true})
	send := suspend.do
	suspend.do = func(ctx context.Context) (string, bool) {
		// The pod that answers now; the wake-up must come from another.
		e.alpha.pod, _, _ = e.sim.Pod("default", "alpha")
		return send(ctx)
	}
	alpha := request{url: "http://" + e.http + "/", headers: [][2]string{{"X-Sandbox-ID", "alpha"}}}
	return []check{
		suspend,
		suspendedCheck(e, []string{"... alpha's status once the sim deleted its pod (kubectl get sandbox alpha -w shows it)"}, "alpha"),
		wakeCheck(client, []string{
			"... and the next request wakes it: held ~" + seconds(e.startDelay) + " while the router resumes alpha, then 200 from a new pod,",
			"with a new address (resuming by hand is the same PATCH with \"Running\")",
		}, alpha, "alpha", &e.alpha),
	}
}

// runChecks sends every request, prints it with its answer, and returns
// how many did not answer as expected.
func runChecks(ctx context.Context, out io.Writer, checks []check) int {
	failed := 0
	for _, c := range checks {
		if len(c.note) > 0 {
			fmt.Fprintln(out) // a new group
		}
		for _, n := range c.note {
			fmt.Fprintf(out, "  # %s\n", n)
		}
		if c.curl != "" {
			fmt.Fprintf(out, "  %s\n", c.curl)
		}
		start := time.Now()
		got, ok := c.do(ctx)
		if c.timed {
			got += fmt.Sprintf("  (after %s)", time.Since(start).Round(10*time.Millisecond))
		}
		if ok {
			fmt.Fprintf(out, "      -> %s\n", got)
		} else {
			failed++
			fmt.Fprintf(out, "      FAILED: got %s; want %s\n", got, c.want)
		}
	}
	return failed
}

// printHeader says what runs where.
func printHeader(out io.Writer, e *env, routerPid int, routerLog, tmp string) {
	fmt.Fprintf(out, `
sandbox-router demo: the router binary in front of simulated sandboxes on a real kube-apiserver.

  kube-apiserver  %s (etcd beside it), admin kubeconfig %s
  router          http://%s, admin http://%s, pid %d, as user "router" bound to deploy/rbac
  activator       on: holds requests for sleeping sandboxes while it resumes them; suspends idle ones
                  (it leads the Lease %s/sandbox-router-idle-suspender)
  guarded router  http://%s, admin http://%s: --authz-mode=kubernetes,scoped-token, sessions, minting;
                  team-a/agent (token in %s) may reach team-a/beta only
  MCP endpoint    %s on the guarded router (--mcp-host %s): every tool acts
                  as its caller; try it as the agent with T=$(cat %s)
  dashboard       http://%s/ (the router's, anonymous: it runs allow-all)
                  http://%s/ (the guarded router's: sign in with the agent's token, %s)
  xDS server      %s (the router's --xds-listen): routes for Envoy and proxyless gRPC clients; a running
                  sandbox's endpoint is its pod, any other's the router (--xds-router-endpoints %s)
  gRPC            every pod serves grpc.health.v1 on port %d (grpc-go); try it through xDS yourself:
                  %s
%s  warm-pool pod   default/%s, UID %s
  logs            %s, %s, %s, API server and etcd under %s

Every request below was just sent once; the answer it got is under it.
`, e.c.URL, e.c.KubeconfigPath, e.http, e.admin, routerPid, cluster.RouterNamespace,
		e.guarded.http, e.guarded.admin, e.guarded.tokenFile, mcpURL(e.guarded), mcpHost, e.guarded.tokenFile,
		e.dashboard, e.guarded.dashboard, e.guarded.tokenFile, e.xds, e.http, grpcPort, xdsCommand(e, xdsTarget("default", "alpha")),
		sandboxList(e), e.warmPod, e.warmUID,
		routerLog, filepath.Join(tmp, "access.log"), filepath.Join(tmp, "sim.log"), e.c.Dir)
}

func sandboxList(e *env) string {
	var b strings.Builder
	for i, sb := range sandboxes {
		label := ""
		if i == 0 {
			label = "sandboxes"
		}
		about := sb.about
		if sb.idle {
			about += ", annotation " + idleTimeoutAnnotation + ": " + e.idleTimeout.String()
		}
		fmt.Fprintf(&b, "  %-15s %s/%s (%s)\n", label, sb.namespace, sb.name, about)
	}
	return b.String()
}
