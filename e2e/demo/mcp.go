package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// The MCP endpoint (docs/mcp.md), served by the guarded router on a host
// of its own (--mcp-host): an MCP client authenticates with a bearer
// token like any other caller, and every tool acts as that caller. The
// demo gives clients team-a/agent's token, which reaches team-a/beta and
// nothing else, so beta is the one sandbox its tools see; the agent has
// no RBAC on Sandbox objects, so a tool that changes one is refused by
// the API server, which judges the agent, not the router.

// mcpHost is the endpoint's host name: a name of its own beside the
// sandboxes' (*.localhost resolves to loopback).
const mcpHost = "mcp." + baseDomain

// mcpInitialize is the body of the printed curl initialize.
const mcpInitialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`

// mcpURL is the endpoint as MCP clients name it.
func mcpURL(g *guarded) string {
	_, port, _ := net.SplitHostPort(g.http)
	return "http://" + mcpHost + ":" + port + "/mcp"
}

// bearerTransport adds the caller's token to every request, as an MCP
// client configured with an Authorization header does.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// mcpSession connects the Go SDK's MCP client to the endpoint as the
// agent, dialing every *.localhost name at the guarded router.
func mcpSession(ctx context.Context, g *guarded) (*sdk.ClientSession, error) {
	base := &http.Transport{Proxy: nil, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, g.http)
	}}
	client := sdk.NewClient(&sdk.Implementation{Name: "sandbox-router-demo", Version: "1"}, nil)
	return client.Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint:   mcpURL(g),
		HTTPClient: &http.Client{Transport: bearerTransport{token: g.token, base: base}},
		MaxRetries: -1,
	}, nil)
}

// mcpStep is a check that runs f on a fresh MCP session of the agent's,
// closed after it.
func mcpStep(g *guarded, note []string, want string, f func(ctx context.Context, cs *sdk.ClientSession) (string, bool)) check {
	return check{note: note, want: want, do: func(ctx context.Context) (string, bool) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		cs, err := mcpSession(ctx, g)
		if err != nil {
			return "connect: " + err.Error(), false
		}
		defer cs.Close()
		return f(ctx, cs)
	}}
}

// callTool calls a tool and returns its text, and whether the tool
// reported an error.
func callTool(ctx context.Context, cs *sdk.ClientSession, name string, args map[string]any) (text string, toolErr bool, err error) {
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return "", false, err
	}
	var b strings.Builder
	for _, c := range res.Content {
		if t, ok := c.(*sdk.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	return b.String(), res.IsError, nil
}

// mcpChecks show the endpoint: its metadata and 401 challenge, an
// initialize with curl, and the Go SDK's client listing the tools and
// calling them as the agent.
func mcpChecks(e *env) []check {
	g := e.guarded
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	proxy := "http://" + g.http
	url := mcpURL(g)
	metadata := request{url: proxy + "/.well-known/oauth-protected-resource/mcp", host: mcpHost}
	noToken := request{method: http.MethodPost, url: proxy + "/mcp", host: mcpHost}
	initialize := request{method: http.MethodPost, url: proxy + "/mcp", host: mcpHost, body: mcpInitialize, headers: [][2]string{
		{"Authorization", "Bearer " + g.token}, {"Content-Type", "application/json"}, {"Accept", "application/json, text/event-stream"},
	}}
	initializeLine := `curl -s -H "Authorization: Bearer $T" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream'` +
		` -H 'Host: ` + mcpHost + `' ` + proxy + `/mcp -d '` + mcpInitialize + `'`
	beta := map[string]any{"namespace": agentNamespace, "name": "beta"}

	return []check{
		httpCheck(client, []string{
			"MCP: the guarded router serves the MCP endpoint (Streamable HTTP) at " + url + " (--mcp-host " + mcpHost + ");",
			"every tool acts as its caller. The OAuth protected-resource metadata (RFC 9728) says where and how to send the token:",
		}, metadata, "", "", "", expect{status: 200, contains: `"resource":"` + url + `"`}),
		{
			note: []string{"without a token: 401, and the challenge that points MCP clients to the metadata"},
			curl: noToken.curl("-o /dev/null -D -", "| grep -i '^www-authenticate'"),
			want: `401 with WWW-Authenticate: Bearer resource_metadata="...`,
			do: func(ctx context.Context) (string, bool) {
				status, hdr, err := head(ctx, client, noToken)
				if err != nil {
					return err.Error(), false
				}
				wa := hdr.Get("Www-Authenticate")
				return fmt.Sprintf("%d, WWW-Authenticate: %s", status, wa),
					status == http.StatusUnauthorized && wa == `Bearer resource_metadata="`+strings.TrimSuffix(url, "/mcp")+`/.well-known/oauth-protected-resource/mcp"`
			},
		},
		{
			note: []string{"initialize a session as team-a/agent, with its token (TokenRequest; it reaches team-a/beta only):",
				"T=$(cat " + g.tokenFile + ")"},
			curl: initializeLine,
			want: "200, an initialize result from sandbox-router and an Mcp-Session-Id",
			do: func(ctx context.Context) (string, bool) {
				return mcpInitializeCheck(ctx, client, initialize)
			},
		},
		mcpStep(g, []string{
			"the same URL and token in an MCP client: Claude Code, as below; VS Code, Cursor, Claude Desktop and the SDKs in docs/mcp.md",
			`claude mcp add --transport http sandboxes ` + url + ` --header "Authorization: Bearer $T"`,
			"(a client that cannot resolve " + mcpHost + " needs '127.0.0.1 " + mcpHost + "' in /etc/hosts)",
			"here the Go SDK's MCP client (github.com/modelcontextprotocol/go-sdk) connects and lists the tools (tools/list sorts them by name),",
			"then calls some of them as the agent:",
		}, "12 tools from sandbox-router", func(ctx context.Context, cs *sdk.ClientSession) (string, bool) {
			init := cs.InitializeResult()
			tools, err := cs.ListTools(ctx, nil)
			if err != nil {
				return "tools/list: " + err.Error(), false
			}
			var names []string
			for _, t := range tools.Tools {
				names = append(names, t.Name)
			}
			return fmt.Sprintf("%s, protocol %s, %d tools: %s", init.ServerInfo.Name, init.ProtocolVersion, len(names), strings.Join(names, ", ")),
				init.ServerInfo.Name == "sandbox-router" && len(names) == 12 && slices.Contains(names, "list_sandboxes") && slices.Contains(names, "execute_command")
		}),
		mcpStep(g, []string{"list_sandboxes: what the agent may reach, and nothing else"}, "team-a/beta alone",
			func(ctx context.Context, cs *sdk.ClientSession) (string, bool) {
				text, toolErr, err := callTool(ctx, cs, "list_sandboxes", nil)
				if err != nil || toolErr {
					return fmt.Sprintf("%v %s", err, text), false
				}
				var l struct {
					Sandboxes []struct{ Namespace, Name, State string }
				}
				if err := json.Unmarshal([]byte(text), &l); err != nil {
					return err.Error(), false
				}
				var got []string
				for _, s := range l.Sandboxes {
					got = append(got, s.Namespace+"/"+s.Name+" "+s.State)
				}
				return strings.Join(got, ", "), len(got) == 1 && got[0] == "team-a/beta running"
			}),
		mcpStep(g, []string{"execute_command in team-a/beta (through the router, with the agent's token; the sim runs echo itself)"},
			`exit 0, stdout "hello from MCP\n"`, func(ctx context.Context, cs *sdk.ClientSession) (string, bool) {
				text, toolErr, err := callTool(ctx, cs, "execute_command", map[string]any{"namespace": agentNamespace, "name": "beta", "command": "echo hello from MCP"})
				if err != nil || toolErr {
					return fmt.Sprintf("%v %s", err, text), false
				}
				var r struct {
					Stdout   string
					ExitCode int `json:"exit_code"`
				}
				if err := json.Unmarshal([]byte(text), &r); err != nil {
					return err.Error(), false
				}
				return fmt.Sprintf("exit %d, stdout %q", r.ExitCode, r.Stdout), r.ExitCode == 0 && r.Stdout == "hello from MCP\n"
			}),
		mcpStep(g, []string{"get_sandbox of default/alpha, which exists, and of default/nobody, which does not: the same answer"},
			"the same tool error for both", func(ctx context.Context, cs *sdk.ClientSession) (string, bool) {
				var texts []string
				for _, name := range []string{"alpha", "nobody"} {
					text, toolErr, err := callTool(ctx, cs, "get_sandbox", map[string]any{"namespace": "default", "name": name})
					if err != nil {
						return err.Error(), false
					}
					if !toolErr {
						return "no error for " + name + ": " + text, false
					}
					texts = append(texts, text)
				}
				same := strings.ReplaceAll(texts[0], "alpha", "nobody") == texts[1]
				return fmt.Sprintf("%q (for nobody: the same, name aside: %v)", texts[0], same), same
			}),
		mcpStep(g, []string{"suspend_sandbox team-a/beta: the change is made with the agent's own token, and the agent has no RBAC",
			"on Sandbox objects (the router itself may patch them; it does not lend that to callers)"},
			"a tool error: Kubernetes refused (RBAC)", func(ctx context.Context, cs *sdk.ClientSession) (string, bool) {
				text, toolErr, err := callTool(ctx, cs, "suspend_sandbox", beta)
				if err != nil {
					return err.Error(), false
				}
				return excerpt(text, ""), toolErr && strings.HasPrefix(text, "Kubernetes refused to suspend team-a/beta for you (RBAC)")
			}),
	}
}

// head sends r and returns the status and the response's header.
func head(ctx context.Context, client *http.Client, r request) (int, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Host = r.host
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

// mcpInitializeCheck sends the initialize as the printed curl does,
// reads the result (JSON, or the first event of a stream), and ends the
// session it opened (DELETE with its Mcp-Session-Id).
func mcpInitializeCheck(ctx context.Context, client *http.Client, r request) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, strings.NewReader(r.body))
	if err != nil {
		return err.Error(), false
	}
	req.Host = r.host
	for _, h := range r.headers {
		req.Header.Set(h[0], h[1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return err.Error(), false
	}
	defer resp.Body.Close()
	session := resp.Header.Get("Mcp-Session-Id")
	if session != "" {
		defer func() {
			del, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodDelete, r.url, nil)
			del.Host = r.host
			del.Header.Set("Authorization", req.Header.Get("Authorization"))
			del.Header.Set("Mcp-Session-Id", session)
			if resp, err := client.Do(del); err == nil {
				resp.Body.Close()
			}
		}()
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Sprintf("%d %v", resp.StatusCode, err), false
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// The result is the data of the stream's one event.
		var data []byte
		for line := range strings.Lines(string(body)) {
			if d, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data:"); ok {
				data = []byte(strings.TrimSpace(d))
				break
			}
		}
		if data == nil {
			return fmt.Sprintf("%d: the stream ended without an event", resp.StatusCode), false
		}
		body = data
	}
	var m struct {
		Result struct {
			ProtocolVersion string `json:"protocolVersion"`
			ServerInfo      struct{ Name, Title string }
		}
		Error *struct{ Message string }
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Sprintf("%d %s", resp.StatusCode, excerpt(string(body), "")), false
	}
	if m.Error != nil {
		return fmt.Sprintf("%d error %s", resp.StatusCode, m.Error.Message), false
	}
	got := fmt.Sprintf("%d %s, serverInfo %s (%q), protocol %s, Mcp-Session-Id set: %v", resp.StatusCode, resp.Header.Get("Content-Type"),
		m.Result.ServerInfo.Name, m.Result.ServerInfo.Title, m.Result.ProtocolVersion, session != "")
	return got, resp.StatusCode == http.StatusOK && m.Result.ServerInfo.Name == "sandbox-router" && session != ""
}
