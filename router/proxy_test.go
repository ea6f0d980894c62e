package router

// End-to-end tests of the request path: routing, the router's own
// answers, header hygiene, client disconnects, retries and body limits.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// TestRoutingByHeaderAndHost: the key comes from the public host name when
// it is under a base domain, else from the X-Sandbox-* headers; the
// request reaches the port it names with its path and Host intact.
func TestRoutingByHeaderAndHost(t *testing.T) {
	env := newProxyEnv(t, nil)
	env.res.set("team-a", "sb2", resolver.StateRunning, resolver.ProtocolAuto)
	a, seenA := startRecorder(t, false)
	b, seenB := startRecorder(t, false)

	cases := []struct {
		name    string
		host    string // "" = the router's address
		headers map[string]string
		wantKey resolver.Key
		want    *backend
	}{
		{
			name:    "headers",
			headers: map[string]string{"X-Sandbox-ID": "sb2", "X-Sandbox-Namespace": "team-a", "X-Sandbox-Port": strconv.Itoa(a.port)},
			wantKey: resolver.Key{Namespace: "team-a", Name: "sb2"}, want: a,
		},
		{
			name:    "headers default namespace",
			headers: map[string]string{"X-Sandbox-ID": "sb1", "X-Sandbox-Port": strconv.Itoa(b.port)},
			wantKey: resolver.Key{Namespace: "default", Name: "sb1"}, want: b,
		},
		{
			name: "host with port",
			host: fmt.Sprintf("%d-sb2.team-a.%s", a.port, testBaseDomain),
			// The host wins over contradicting headers.
			headers: map[string]string{"X-Sandbox-ID": "sb1", "X-Sandbox-Namespace": "default"},
			wantKey: resolver.Key{Namespace: "team-a", Name: "sb2"}, want: a,
		},
		{
			name:    "host with port and explicit host port",
			host:    fmt.Sprintf("%d-sb1.default.%s:8443", b.port, testBaseDomain),
			wantKey: resolver.Key{Namespace: "default", Name: "sb1"}, want: b,
		},
		{
			name:    "host without port takes X-Sandbox-Port",
			host:    "sb2.team-a." + testBaseDomain,
			headers: map[string]string{"X-Sandbox-Port": strconv.Itoa(b.port)},
			wantKey: resolver.Key{Namespace: "team-a", Name: "sb2"}, want: b,
		},
		{
			name:    "base domain itself falls back to headers",
			host:    testBaseDomain,
			headers: map[string]string{"X-Sandbox-ID": "sb2", "X-Sandbox-Namespace": "team-a", "X-Sandbox-Port": strconv.Itoa(a.port)},
			wantKey: resolver.Key{Namespace: "team-a", Name: "sb2"}, want: a,
		},
		{
			name:    "foreign host falls back to headers",
			host:    "api.example.com",
			headers: map[string]string{"X-Sandbox-ID": "sb1", "X-Sandbox-Port": strconv.Itoa(b.port)},
			wantKey: resolver.Key{Namespace: "default", Name: "sb1"}, want: b,
		},
	}
	client := env.client(viaH1)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, env.url(viaH1, tc.host, "/some/path?x=1&y=%2F"), nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "ok" || resp.Header.Get("X-Backend") != "recorder" {
				t.Fatalf("got %d %q, want the backend's 200 ok", resp.StatusCode, body)
			}
			if key, _ := env.res.lastLookup(); key != tc.wantKey {
				t.Errorf("resolver asked for %+v, want %+v", key, tc.wantKey)
			}
			seen, other := seenA, seenB
			if tc.want == b {
				seen, other = seenB, seenA
			}
			got := recv(t, seen, "request at the backend")
			select {
			case r := <-other:
				t.Fatalf("request also reached the other backend: %+v", r)
			default:
			}
			if got.RequestURI != "/some/path?x=1&y=%2F" {
				t.Errorf("backend RequestURI = %q", got.RequestURI)
			}
			wantHost := tc.host
			if wantHost == "" {
				wantHost = env.httpAddr
			}
			if got.Host != wantHost {
				t.Errorf("backend Host = %q, want %q (preserved)", got.Host, wantHost)
			}
		})
	}
}

// TestRouterAnswers: requests the router answers itself, with the JSON
// error contract (or HTML for browsers), never reaching a backend.
func TestRouterAnswers(t *testing.T) {
	env := newProxyEnv(t, nil)
	env.res.set("default", "sleepy", resolver.StateSuspended, resolver.ProtocolAuto)
	env.res.set("default", "booting", resolver.StateStarting, resolver.ProtocolAuto)
	env.res.set("default", "dozing", resolver.StateSuspending, resolver.ProtocolAuto)
	env.res.set("default", "done", resolver.StateFinished, resolver.ProtocolAuto)
	be, seen := startRecorder(t, false)
	port := strconv.Itoa(be.port)

	cases := []struct {
		name       string
		host       string
		headers    map[string]string
		notSynced  bool
		status     int
		code       string
		retryAfter string
	}{
		{name: "unknown sandbox", headers: map[string]string{"X-Sandbox-ID": "nope", "X-Sandbox-Port": port}, status: 404, code: CodeSandboxNotFound},
		{name: "unknown before sync", headers: map[string]string{"X-Sandbox-ID": "nope", "X-Sandbox-Port": port}, notSynced: true, status: 503, code: CodeNotReady, retryAfter: "1"},
		{name: "suspended", headers: map[string]string{"X-Sandbox-ID": "sleepy", "X-Sandbox-Port": port}, status: 503, code: CodeSandboxSuspended, retryAfter: "5"},
		{name: "starting", headers: map[string]string{"X-Sandbox-ID": "booting", "X-Sandbox-Port": port}, status: 503, code: CodeSandboxStarting, retryAfter: "1"},
		{name: "suspending", headers: map[string]string{"X-Sandbox-ID": "dozing", "X-Sandbox-Port": port}, status: 503, code: CodeSandboxSuspending, retryAfter: "5"},
		{name: "finished", host: "done.default." + testBaseDomain, headers: map[string]string{"X-Sandbox-Port": port}, status: 410, code: CodeSandboxFinished},
		{name: "missing id", status: 400, code: "missing_sandbox_id"},
		{name: "invalid id", headers: map[string]string{"X-Sandbox-ID": "Bad_ID"}, status: 400, code: "invalid_sandbox_id"},
		{name: "invalid namespace", headers: map[string]string{"X-Sandbox-ID": "sb1", "X-Sandbox-Namespace": "-x"}, status: 400, code: "invalid_namespace"},
		{name: "invalid port", headers: map[string]string{"X-Sandbox-ID": "sb1", "X-Sandbox-Port": "65536"}, status: 400, code: "invalid_port"},
		{name: "port zero", headers: map[string]string{"X-Sandbox-ID": "sb1", "X-Sandbox-Port": "0"}, status: 400, code: "invalid_port"},
		{name: "invalid uid", headers: map[string]string{"X-Sandbox-ID": "sb1", "X-Sandbox-UID": "not-a-uuid"}, status: 400, code: "invalid_uid"},
		{name: "host too deep", host: "a.b.c." + testBaseDomain, status: 400, code: "invalid_host"},
		{name: "host bad namespace", host: "sb1.Bad_NS." + testBaseDomain, status: 400, code: "invalid_namespace"},
	}
	client := env.client(viaH1)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env.res.notSynced.Store(tc.notSynced)
			defer env.res.notSynced.Store(false)
			for _, html := range []bool{false, true} {
				req, err := http.NewRequest(http.MethodGet, env.url(viaH1, tc.host, "/x"), nil)
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tc.headers {
					req.Header.Set(k, v)
				}
				if html {
					req.Header.Set("Accept", "text/html,application/xhtml+xml,application/json;q=0.9")
				} else {
					req.Header.Set("Accept", "application/json, text/html")
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tc.status {
					t.Errorf("html=%v: status %d, want %d", html, resp.StatusCode, tc.status)
				}
				if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("html=%v: Retry-After %q, want %q", html, got, tc.retryAfter)
				}
				if got := resp.Header.Get("Cache-Control"); got != "no-store" {
					t.Errorf("html=%v: Cache-Control %q, want no-store", html, got)
				}
				if html {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
						t.Errorf("browser got Content-Type %q", ct)
					}
					wantTitle := fmt.Sprintf("%d %s", tc.status, http.StatusText(tc.status))
					if !strings.Contains(string(body), "<title>"+wantTitle+"</title>") || !strings.Contains(string(body), tc.code) {
						t.Errorf("HTML page %q lacks %q or %q", body, wantTitle, tc.code)
					}
					continue
				}
				ae, _ := readAPIError(t, resp)
				if ae.Code != tc.code {
					t.Errorf("code %q, want %q (detail %q)", ae.Code, tc.code, ae.Detail)
				}
			}
		})
	}
	select {
	case r := <-seen:
		t.Fatalf("a request the router should answer reached the backend: %+v", r)
	default:
	}
}

// TestHealthz: /healthz without a routing key is the router's own health
// answer; with a key it is the sandbox's path like any other.
func TestHealthz(t *testing.T) {
	env := newProxyEnv(t, nil)
	be, seen := startRecorder(t, false)
	for _, proto := range []string{viaH1, viaH2C, viaH2} {
		t.Run(proto, func(t *testing.T) {
			client := env.client(proto)
			resp, err := client.Get(env.url(proto, "", "/healthz"))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != `{"status":"ok"}` || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("healthz = %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			resp, err = client.Do(env.sandboxRequest(context.Background(), proto, http.MethodGet, "/healthz", be.port, nil))
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "ok" {
				t.Fatalf("/healthz with a key = %d %q, want the sandbox's answer", resp.StatusCode, body)
			}
			if r := recv(t, seen, "sandbox /healthz"); r.RequestURI != "/healthz" {
				t.Fatalf("backend got %q", r.RequestURI)
			}
		})
	}
}

// TestRequestHeaderHygiene: what the sandbox receives, for each upstream
// protocol and forwarding policy. The request is written by hand so that
// it can carry every hop-by-hop header a real client might send.
func TestRequestHeaderHygiene(t *testing.T) {
	cases := []struct {
		name                 string
		h2c                  bool
		forwardAuthorization bool
		trusted              bool
	}{
		{name: "http1 defaults"},
		{name: "http1 forward authorization", forwardAuthorization: true},
		{name: "http1 trusted proxy", trusted: true},
		{name: "h2c defaults", h2c: true},
		{name: "h2c trusted proxy forward authorization", h2c: true, trusted: true, forwardAuthorization: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newProxyEnv(t, func(o *Options) {
				o.ForwardAuthorization = tc.forwardAuthorization
				if tc.trusted {
					o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
				}
			})
			proto := resolver.ProtocolHTTP1
			if tc.h2c {
				proto = resolver.ProtocolH2C
			}
			env.res.set("default", "sb1", resolver.StateRunning, proto)
			be, seen := startRecorder(t, tc.h2c)

			req := "POST /echo?q=1 HTTP/1.1\r\n" +
				"Host: public.example.com\r\n" +
				"X-Sandbox-ID: sb1\r\n" +
				"X-Sandbox-Namespace: default\r\n" +
				"X-Sandbox-Port: " + strconv.Itoa(be.port) + "\r\n" +
				"Connection: keep-alive, X-Hop-Secret\r\n" +
				"X-Hop-Secret: hop\r\n" +
				"Keep-Alive: timeout=5\r\n" +
				"Proxy-Connection: keep-alive\r\n" +
				"Proxy-Authorization: Basic cHJveHk6cHJveHk=\r\n" +
				"TE: trailers, deflate\r\n" +
				"Upgrade: websocket\r\n" + // without Connection: upgrade this is no upgrade
				"Authorization: Bearer client-secret\r\n" +
				"X-Forwarded-For: 203.0.113.7\r\n" +
				"X-Forwarded-Proto: https\r\n" +
				"X-Forwarded-Host: outer.example.com\r\n" +
				"X-Real-IP: 203.0.113.7\r\n" +
				"Forwarded: for=203.0.113.7\r\n" +
				"Expect: 100-continue\r\n" +
				"X-Custom: kept\r\n" +
				"X-Multi: one\r\n" +
				"X-Multi: two\r\n" +
				"Content-Type: text/plain\r\n" +
				"Content-Length: 5\r\n" +
				"\r\n" +
				"hello"
			resp, body := rawExchange(t, env.httpAddr, req)
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			got := recv(t, seen, "request at the backend")
			if got.Body != "hello" || got.Method != "POST" || got.RequestURI != "/echo?q=1" {
				t.Errorf("backend got %s %s body %q", got.Method, got.RequestURI, got.Body)
			}
			if got.Host != "public.example.com" {
				t.Errorf("Host = %q, want the client's", got.Host)
			}
			wantProto := "HTTP/1.1"
			if tc.h2c {
				wantProto = "HTTP/2.0"
			}
			if got.Proto != wantProto {
				t.Errorf("upstream protocol %s, want %s", got.Proto, wantProto)
			}
			h := got.Header
			for _, k := range []string{"Connection", "X-Hop-Secret", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
				"Upgrade", "X-Sandbox-Id", "X-Sandbox-Namespace", "X-Sandbox-Port", "X-Real-Ip", "Forwarded", "Expect"} {
				if v, ok := h[k]; ok {
					t.Errorf("%s forwarded: %q", k, v)
				}
			}
			if te := h.Values("Te"); tc.h2c && !(len(te) == 0 || len(te) == 1 && te[0] == "trailers") || !tc.h2c && len(te) != 0 {
				t.Errorf("TE forwarded as %q", te)
			}
			if got := h.Get("Authorization"); tc.forwardAuthorization != (got == "Bearer client-secret") {
				t.Errorf("Authorization = %q with ForwardAuthorization=%v", got, tc.forwardAuthorization)
			}
			wantXFF, wantXFP, wantXFH := "127.0.0.1", "http", "public.example.com"
			if tc.trusted {
				wantXFF, wantXFP, wantXFH = "203.0.113.7, 127.0.0.1", "https", "outer.example.com"
			}
			if got := h.Values("X-Forwarded-For"); len(got) != 1 || got[0] != wantXFF {
				t.Errorf("X-Forwarded-For = %q, want %q", got, wantXFF)
			}
			if got := h.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != wantXFP {
				t.Errorf("X-Forwarded-Proto = %q, want %q", got, wantXFP)
			}
			if got := h.Values("X-Forwarded-Host"); len(got) != 1 || got[0] != wantXFH {
				t.Errorf("X-Forwarded-Host = %q, want %q", got, wantXFH)
			}
			if h.Get("X-Custom") != "kept" || strings.Join(h.Values("X-Multi"), ",") != "one,two" || h.Get("Content-Type") != "text/plain" {
				t.Errorf("end-to-end headers not kept intact: %v", h)
			}
		})
	}
}

// TestForwardedProtoOverTLS: a client on the HTTPS listener is reported
// as https to the sandbox.
func TestForwardedProtoOverTLS(t *testing.T) {
	env := newProxyEnv(t, nil)
	be, seen := startRecorder(t, false)
	resp, err := env.client(viaH2).Do(env.sandboxRequest(context.Background(), viaH2, http.MethodGet, "/", be.port, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := recv(t, seen, "request at the backend")
	if got.Header.Get("X-Forwarded-Proto") != "https" || got.Header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Fatalf("X-Forwarded-* = %v", got.Header)
	}
}

// TestResponseHeaderHygiene: hop-by-hop headers of the sandbox's response,
// including those its Connection header names, do not reach the client.
// The sandbox is a raw TCP server so that it can send them all.
func TestResponseHeaderHygiene(t *testing.T) {
	env := newProxyEnv(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, "HTTP/1.1 200 OK\r\n"+
						"Connection: X-Resp-Hop\r\n"+
						"X-Resp-Hop: secret\r\n"+
						"Keep-Alive: timeout=30\r\n"+
						"Proxy-Authenticate: Basic\r\n"+
						"Upgrade: h2c\r\n"+
						"X-End: kept\r\n"+
						"Content-Length: 4\r\n"+
						"\r\n"+
						"body")
				}
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, proto := range []string{viaH1, viaH2C} {
		t.Run(proto, func(t *testing.T) {
			resp, err := env.client(proto).Do(env.sandboxRequest(context.Background(), proto, http.MethodGet, "/", port, nil))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "body" || resp.Header.Get("X-End") != "kept" {
				t.Fatalf("got %d %q %v", resp.StatusCode, body, resp.Header)
			}
			for _, k := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("response header %s leaked: %q", k, v)
				}
			}
			if v := resp.Header.Get("Connection"); strings.Contains(strings.ToLower(v), "x-resp-hop") {
				t.Errorf("Connection leaked: %q", v)
			}
		})
	}
}

// TestClientDisconnectCancelsUpstream: a client that goes away, before the
// sandbox answered or in the middle of the body, cancels the sandbox's
// request.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	for _, upstream := range []string{"http1", "h2c"} {
		for _, proto := range []string{viaH1, viaH2C, viaH2} {
			for _, midBody := range []bool{false, true} {
				name := fmt.Sprintf("%s to %s mid-body=%v", proto, upstream, midBody)
				t.Run(name, func(t *testing.T) {
					h2c := upstream == "h2c"
					env := newProxyEnv(t, nil)
					if h2c {
						env.res.set("default", "sb1", resolver.StateRunning, resolver.ProtocolH2C)
					}
					arrived := make(chan struct{})
					canceled := make(chan error, 1)
					be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						if midBody {
							w.Header().Set("Content-Type", "text/plain")
							io.WriteString(w, "first part\n")
							http.NewResponseController(w).Flush()
						}
						close(arrived)
						<-r.Context().Done()
						canceled <- r.Context().Err()
					}), h2c)

					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					respc := make(chan error, 1)
					go func() {
						resp, err := env.client(proto).Do(env.sandboxRequest(ctx, proto, http.MethodGet, "/wait", be.port, nil))
						if err != nil {
							respc <- err
							return
						}
						defer resp.Body.Close()
						line, err := bufio.NewReader(resp.Body).ReadString('\n')
						if err == nil && line != "first part\n" {
							err = fmt.Errorf("first line %q", line)
						}
						respc <- err
						<-ctx.Done()
					}()
					recv(t, arrived, "request at the backend")
					if midBody {
						if err := recv(t, respc, "first part of the body"); err != nil {
							t.Fatal(err)
						}
					}
					cancel()
					if err := recv(t, canceled, "backend request context to end"); !errors.Is(err, context.Canceled) {
						t.Fatalf("backend context error %v", err)
					}
					if !midBody {
						if err := recv(t, respc, "client to give up"); !errors.Is(err, context.Canceled) {
							t.Fatalf("client error %v, want context.Canceled", err)
						}
					}
				})
			}
		}
	}
}

// TestDialRetryUntilListening: while nothing listens on the sandbox port
// the router retries the connect; once the sandbox listens, the GET goes
// through.
func TestDialRetryUntilListening(t *testing.T) {
	env := newProxyEnv(t, func(o *Options) {
		o.DialRetries = 12
		o.RetryBackoff = 5 * time.Millisecond
	})
	port := freePort(t)
	done := make(chan response, 1)
	go func() {
		done <- doRequest(env.client(viaH1), env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/late", port, nil))
	}()
	waitUntil(t, "a dial retry", func() bool { return env.metric("sandbox_router_upstream_retries_total", nil) >= 1 })

	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("re-listening on the reserved port: %v", err)
	}
	var hits atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "finally")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	res := recv(t, done, "the retried GET")
	if res.err != nil || res.status != 200 || res.body != "finally" {
		t.Fatalf("GET = %d %q %v", res.status, res.body, res.err)
	}
	if hits.Load() != 1 {
		t.Errorf("sandbox saw %d requests, want 1", hits.Load())
	}
	if got := env.metric("sandbox_router_upstream_errors_total", map[string]string{"reason": "dial"}); got < 1 {
		t.Errorf("dial errors metric = %v", got)
	}
}

// TestDialFailureAnswer: a sandbox that never listens gets a 502 that
// names no internal address.
func TestDialFailureAnswer(t *testing.T) {
	env := newProxyEnv(t, func(o *Options) {
		o.DialRetries = 2
		o.RetryBackoff = time.Millisecond
	})
	port := freePort(t)
	for _, proto := range []string{viaH1, viaH2C} {
		resp, err := env.client(proto).Do(env.sandboxRequest(context.Background(), proto, http.MethodGet, "/", port, nil))
		if err != nil {
			t.Fatal(err)
		}
		ae, raw := readAPIError(t, resp)
		if resp.StatusCode != http.StatusBadGateway || ae.Code != CodeUpstreamConnect {
			t.Fatalf("%s: got %d %q", proto, resp.StatusCode, raw)
		}
		mustNotContainAddr(t, raw, port)
	}
	if got := env.metric("sandbox_router_upstream_retries_total", nil); got != 4 {
		t.Errorf("retries = %v, want 2 per request", got)
	}
}

// closingBackend is a raw sandbox that reads each request (head and body)
// and then closes the connection without answering, except for the first
// keepFirst requests on a connection, which it answers normally.
func closingBackend(t *testing.T, keepFirst int) (port int, attempts *atomic.Int64, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	attempts, conns = new(atomic.Int64), new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if n < keepFirst {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						continue
					}
					attempts.Add(1)
					return // close without a response
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, attempts, conns
}

// TestUpstreamCloseAfterRequest: the sandbox reads a request and drops
// the connection without an answer. A request that may be sent twice
// (idempotent, no body) is retried: on a reused connection, where the drop
// is the keep-alive race, once and at once on a new connection; on a new
// connection (a pod stopping as it took the request) like a failed
// connect, DialRetries times with backoff. Anything else (a POST above
// all) is answered 502 upstream_protocol_error and the sandbox saw it
// exactly once.
func TestUpstreamCloseAfterRequest(t *testing.T) {
	cases := []struct {
		name   string
		method string
		key    string // Idempotency-Key
		body   string
		reused bool
		// dropped: the attempts the sandbox dropped; served: whether a
		// retry on a new connection then got the answer.
		dropped int64
		served  bool
	}{
		{name: "POST fresh", method: http.MethodPost, body: `{"run":"once"}`, dropped: 1},
		{name: "POST reused", method: http.MethodPost, body: `{"run":"once"}`, reused: true, dropped: 1},
		{name: "POST reused with idempotency key", method: http.MethodPost, key: "k1", body: `{"run":"once"}`, reused: true, dropped: 1},
		{name: "GET fresh", method: http.MethodGet, dropped: 2}, // DialRetries 1: dropped twice, then 502
		{name: "GET reused", method: http.MethodGet, reused: true, dropped: 1, served: true},
		{name: "DELETE reused", method: http.MethodDelete, reused: true, dropped: 1},
		{name: "DELETE reused with idempotency key", method: http.MethodDelete, key: "k2", reused: true, dropped: 1, served: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newProxyEnv(t, func(o *Options) {
				o.DialRetries = 1
				o.RetryBackoff = time.Millisecond
			})
			keep := 0
			if tc.reused {
				keep = 1 // answer the first request on each connection
			}
			port, attempts, conns := closingBackend(t, keep)
			client := env.client(viaH1)
			if tc.reused {
				res := doRequest(client, env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/warm", port, nil))
				if res.err != nil || res.status != 200 {
					t.Fatalf("warm-up GET = %d %v", res.status, res.err)
				}
			}
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req := env.sandboxRequest(context.Background(), viaH1, tc.method, "/do", port, body)
			if tc.key != "" {
				req.Header.Set("Idempotency-Key", tc.key)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			wantConns := tc.dropped // the warm-up's connection is the first dropped one when reused
			if tc.served {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("got %d, want 200 from the retry on a new connection", resp.StatusCode)
				}
				wantConns++
				if got := env.metric("sandbox_router_upstream_errors_total", map[string]string{"reason": "stale_connection"}); got != 1 {
					t.Errorf("stale_connection errors = %v, want 1", got)
				}
			} else {
				ae, raw := readAPIError(t, resp)
				if resp.StatusCode != http.StatusBadGateway || ae.Code != CodeUpstreamProtocol {
					t.Fatalf("got %d %s, want 502 %s", resp.StatusCode, raw, CodeUpstreamProtocol)
				}
				mustNotContainAddr(t, raw, port)
			}
			if n := attempts.Load(); n != tc.dropped {
				t.Errorf("sandbox dropped %d attempts, want %d", n, tc.dropped)
			}
			if n := conns.Load(); n != wantConns {
				t.Errorf("sandbox saw %d connections, want %d", n, wantConns)
			}
			wantRetries := float64(wantConns - 1)
			if tc.reused && !tc.served {
				wantRetries = 0
			}
			if got := env.metric("sandbox_router_upstream_retries_total", nil); got != wantRetries {
				t.Errorf("retries = %v, want %v", got, wantRetries)
			}
		})
	}
}

// TestResponseHeaderTimeout: a sandbox that never answers is a 504 after
// ResponseHeaderTimeout, naming no address, and its request is canceled.
func TestResponseHeaderTimeout(t *testing.T) {
	for _, up := range []struct {
		name string
		h2c  bool
	}{{"http1", false}, {"h2c", true}} {
		t.Run(up.name, func(t *testing.T) {
			env := newProxyEnv(t, func(o *Options) { o.ResponseHeaderTimeout = 50 * time.Millisecond })
			if up.h2c {
				env.res.set("default", "sb1", resolver.StateRunning, resolver.ProtocolH2C)
			}
			canceled := make(chan struct{})
			be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
				close(canceled)
			}), up.h2c)
			resp, err := env.client(viaH1).Do(env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/think", be.port, nil))
			if err != nil {
				t.Fatal(err)
			}
			ae, raw := readAPIError(t, resp)
			if resp.StatusCode != http.StatusGatewayTimeout || ae.Code != CodeUpstreamTimeout {
				t.Fatalf("got %d %s, want 504 %s", resp.StatusCode, raw, CodeUpstreamTimeout)
			}
			mustNotContainAddr(t, raw, be.port)
			recv(t, canceled, "the sandbox's request to be canceled")
		})
	}
}

// TestStaleKeepAliveNotUsed: the sandbox closes an idle keep-alive
// connection on its keep-alive timeout; the next POST (which may not be
// retried) must not be sent into it. The pool's liveness probe drops it
// and dials anew.
func TestStaleKeepAliveNotUsed(t *testing.T) {
	env := newProxyEnv(t, nil)
	var posts atomic.Int64
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		w.Write(b)
	}), false, func(s *http.Server) {
		// Short, but like real servers' (uvicorn 5 s, Node 5 s) longer
		// than the idle time below which the pool skips its probe.
		s.IdleTimeout = 250 * time.Millisecond
	})
	client := env.client(viaH1)
	do := func(method, body string) {
		t.Helper()
		resp, err := client.Do(env.sandboxRequest(context.Background(), viaH1, method, "/", be.port, strings.NewReader(body)))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != body {
			t.Fatalf("%s = %d %q", method, resp.StatusCode, got)
		}
	}
	do(http.MethodPost, "first")
	// Wait until the sandbox has closed the idle connection and the
	// router's end has seen the FIN.
	waitUntil(t, "the pooled connection to be closed by the sandbox", func() bool {
		_, closed := env.idlePoolConns(be.addrPort())
		return closed == 1
	})

	do(http.MethodPost, "second")
	if n := posts.Load(); n != 2 {
		t.Errorf("sandbox saw %d POSTs, want 2", n)
	}
	if n := be.newConns.Load(); n != 2 {
		t.Errorf("sandbox saw %d connections, want 2 (the stale one replaced)", n)
	}
	if got := env.metric("sandbox_router_upstream_errors_total", nil); got != 0 {
		t.Errorf("upstream errors = %v, want none: the stale connection must be dropped before use", got)
	}
}

// TestMaxRequestBody: bodies over MaxRequestBodyBytes are answered 413
// request_body_too_large, whether the length is declared or chunked; a
// body at the limit passes.
func TestMaxRequestBody(t *testing.T) {
	const limit = 1024
	cases := []struct {
		name    string
		proto   string
		h2c     bool
		size    int
		chunked bool
		status  int
	}{
		{"content-length over", viaH1, false, limit + 1, false, 413},
		{"chunked over", viaH1, false, 64 * limit, true, 413},
		{"content-length at limit", viaH1, false, limit, false, 200},
		{"chunked at limit", viaH1, false, limit, true, 200},
		{"h2c client declared over", viaH2C, false, 2 * limit, false, 413},
		{"h2c client streamed over", viaH2C, false, 64 * limit, true, 413},
		{"to h2c sandbox declared over", viaH1, true, 2 * limit, false, 413},
		{"to h2c sandbox chunked over", viaH1, true, 64 * limit, true, 413},
		{"to h2c sandbox chunked at limit", viaH1, true, limit, true, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newProxyEnv(t, func(o *Options) { o.MaxRequestBodyBytes = limit })
			if tc.h2c {
				env.res.set("default", "sb1", resolver.StateRunning, resolver.ProtocolH2C)
			}
			var complete atomic.Int64
			be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// Read everything before answering, so that an
				// oversized body is cut while the sandbox still reads.
				n, err := io.Copy(io.Discard, r.Body)
				if err != nil {
					return
				}
				complete.Add(1)
				fmt.Fprintf(w, "%d", n)
			}), tc.h2c)
			// net/http cannot tell the length of a patternReader: it is
			// sent chunked (or as HTTP/2 DATA without content-length)
			// unless declared.
			req := env.sandboxRequest(context.Background(), tc.proto, http.MethodPost, "/upload", be.port, newPatternReader(1, int64(tc.size)))
			if !tc.chunked {
				req.ContentLength = int64(tc.size)
			}
			resp, err := env.client(tc.proto).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.status == 200 {
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(got) != strconv.Itoa(tc.size) {
					t.Fatalf("got %d %q, want 200 %d", resp.StatusCode, got, tc.size)
				}
				return
			}
			ae, raw := readAPIError(t, resp)
			if resp.StatusCode != tc.status || ae.Code != CodeRequestTooLarge {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, raw, tc.status, CodeRequestTooLarge)
			}
			if n := complete.Load(); n != 0 {
				t.Errorf("sandbox received %d complete oversized bodies", n)
			}
			if !tc.chunked && be.newConns.Load() != 0 {
				t.Errorf("declared oversized body still dialed the sandbox")
			}
		})
	}
}

// uploadSize is large enough that neither socket buffers nor net/http's
// post-handler discard (256 KiB) can absorb what the sandbox leaves unread.
const uploadSize = 4 << 20

// TestUploadToDroppingSandbox: a sandbox that reads the head of a large
// upload and then drops the connection is a 502 for the client, never an
// empty 200 (which the router once sent, taking the sandbox's failure for
// the client's), and the client can read that answer before its
// connection is closed.
func TestUploadToDroppingSandbox(t *testing.T) {
	env := newProxyEnv(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var attempts atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				attempts.Add(1)
				io.CopyN(io.Discard, br, 1000) // a little of the body, then drop
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, proto := range []string{viaH1, viaH2C} {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s chunked=%v", proto, chunked), func(t *testing.T) {
				before := attempts.Load()
				req := env.sandboxRequest(context.Background(), proto, http.MethodPost, "/upload", port, newPatternReader(3, uploadSize))
				if !chunked {
					req.ContentLength = uploadSize
				}
				resp, err := env.client(proto).Do(req)
				if err != nil {
					t.Fatalf("client got no answer: %v", err)
				}
				ae, raw := readAPIError(t, resp)
				if resp.StatusCode != http.StatusBadGateway || ae.Code != CodeUpstreamProtocol {
					t.Fatalf("got %d %s, want 502 %s", resp.StatusCode, raw, CodeUpstreamProtocol)
				}
				mustNotContainAddr(t, raw, port)
				if n := attempts.Load() - before; n != 1 {
					t.Errorf("sandbox saw %d attempts, want 1", n)
				}
			})
		}
	}
}

// TestEarlyAnswerToUpload: a sandbox that answers (403) without reading a
// large upload. The client gets that answer, and its connection is either
// closed or still in step: the unread rest of the body must never be
// parsed as a next request, nor may a later request inherit a canceled
// context (both happened: a 400 or an empty 200 for the next request).
func TestEarlyAnswerToUpload(t *testing.T) {
	for _, up := range []struct {
		name string
		h2c  bool
	}{{"http1", false}, {"h2c", true}} {
		t.Run(up.name, func(t *testing.T) {
			env := newProxyEnv(t, nil)
			if up.h2c {
				env.res.set("default", "sb1", resolver.StateRunning, resolver.ProtocolH2C)
			}
			be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					http.Error(w, "denied", http.StatusForbidden)
					return
				}
				io.WriteString(w, "get ok")
			}), up.h2c)

			t.Run("raw connection", func(t *testing.T) {
				// One connection: the POST with its whole body, then a
				// GET, as a pipelining-free HTTP/1.1 client must send them.
				c, err := net.Dial("tcp", env.httpAddr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(waitTimeout))
				head := fmt.Sprintf("X-Sandbox-ID: sb1\r\nX-Sandbox-Port: %d\r\n", be.port)
				fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: h\r\n%sContent-Length: %d\r\n\r\n", head, uploadSize)
				go func() {
					if _, err := io.Copy(c, newPatternReader(4, uploadSize)); err != nil {
						return // the router closed: fine
					}
					fmt.Fprintf(c, "GET /next HTTP/1.1\r\nHost: h\r\n%s\r\n", head)
				}()
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("no answer to the POST: %v", err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusForbidden || string(body) != "denied\n" {
					t.Fatalf("POST: %d %q, want the sandbox's 403", resp.StatusCode, body)
				}
				resp, err = http.ReadResponse(br, nil)
				if err != nil {
					return // closed after the answer: fine
				}
				body, _ = io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(body) != "get ok" {
					t.Fatalf("next request on the connection: %d %q, want the sandbox's answer or a close", resp.StatusCode, body)
				}
			})

			for _, proto := range []string{viaH1, viaH2C} {
				for _, chunked := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s chunked=%v", proto, chunked), func(t *testing.T) {
						client := env.client(proto)
						for i := range 3 {
							req := env.sandboxRequest(context.Background(), proto, http.MethodPost, "/up", be.port, newPatternReader(5, uploadSize))
							if !chunked {
								req.ContentLength = uploadSize
							}
							res := doRequest(client, req)
							if res.err != nil || res.status != http.StatusForbidden || res.body != "denied\n" {
								t.Fatalf("POST %d: %d %q %v, want the sandbox's 403", i, res.status, res.body, res.err)
							}
							res = doRequest(client, env.sandboxRequest(context.Background(), proto, http.MethodGet, "/next", be.port, nil))
							if res.err != nil || res.status != 200 || res.body != "get ok" {
								t.Fatalf("GET after POST %d: %d %q %v %v", i, res.status, res.body, res.err, res.header)
							}
						}
					})
				}
			}
		})
	}
}
