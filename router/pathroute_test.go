package router

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/access"
)

const testPathPrefix = "/sandboxes"

// TestPathRouting: <prefix>/<ns>/<id>/<port>/<rest> reaches that sandbox
// port with /<rest> (escaping and query as sent) over HTTP/1.1, h2c and
// h2; the sandbox's cookies and own redirects stay under the prefix; a
// WebSocket opens through it.
func TestPathRouting(t *testing.T) {
	env := newProxyEnv(t, func(o *Options) { o.PathRoutingPrefix = testPathPrefix })
	seen := make(chan seenRequest, 8)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- seenRequest{RequestURI: r.RequestURI, Header: r.Header.Clone()}
		w.Header().Add("Set-Cookie", "a=1; Path=/; Domain=router.example")
		w.Header().Add("Set-Cookie", "b=2; path=/lab; HttpOnly")
		w.Header().Add("Set-Cookie", "c=3")
		w.Header().Set("Location", "/login?next=%2F")
		w.WriteHeader(http.StatusFound)
	}), false)
	prefix := testPathPrefix + "/default/sb1/" + strconv.Itoa(be.port)
	for _, proto := range []string{viaH1, viaH2C, viaH2} {
		client := env.client(proto)
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		r := doRequest(client, mustRequest(t, http.MethodGet, env.url(proto, "", prefix+"/lab/a%2Fb?x=%2F"), nil))
		if r.status != http.StatusFound {
			t.Fatalf("%s: %d %q", proto, r.status, r.body)
		}
		if got := recv(t, seen, "the request at the sandbox"); got.RequestURI != "/lab/a%2Fb?x=%2F" {
			t.Errorf("%s: the sandbox got %q", proto, got.RequestURI)
		}
		want := []string{"a=1; Path=" + prefix, "b=2; Path=" + prefix + "/lab; HttpOnly", "c=3; Path=" + prefix}
		if got := r.header.Values("Set-Cookie"); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: Set-Cookie %q, want %q", proto, got, want)
		}
		if got := r.header.Get("Location"); got != prefix+"/login?next=%2F" {
			t.Errorf("%s: Location %q", proto, got)
		}
	}
	// A malformed path under the prefix is refused, not routed by headers.
	req := env.sandboxRequest(context.Background(), viaH1, http.MethodGet, testPathPrefix+"/default/sb1/notaport/x", be.port, nil)
	if r := doRequest(env.client(viaH1), req); r.status != http.StatusBadRequest || !strings.Contains(r.body, "invalid_path") {
		t.Fatalf("malformed path: %d %q", r.status, r.body)
	}

	ws := startWSSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+env.httpAddr+testPathPrefix+"/default/sb1/"+strconv.Itoa(ws.port)+"/api/kernels/k1/channels",
		&websocket.DialOptions{HTTPClient: env.client(viaH1), Subprotocols: []string{"v1.kernel.websocket.jupyter.org"}})
	if err != nil {
		t.Fatalf("WebSocket by path: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "echo: hi" {
		t.Fatalf("echo: %q %v", msg, err)
	}
}

// TestBrowserSessionUnderPathRouting: the entry link's cookie lives at the
// sandbox port's prefix, so the browser sends it there and not to another
// sandbox port on the same router host; the 302 goes back under the
// prefix; the sandbox sees neither token nor cookie.
func TestBrowserSessionUnderPathRouting(t *testing.T) {
	checker, err := access.New(access.Options{
		Modes:    []access.Mode{access.ModeTokenReview},
		Tokens:   tokenUsers{"alice-token": "alice"},
		Metrics:  access.NewMetrics(prometheus.NewRegistry()),
		Sessions: access.Sessions{Cookie: "sandbox-session"},
	})
	if err != nil {
		t.Fatal(err)
	}
	env := newProxyEnv(t, func(o *Options) {
		o.Access = checker
		o.PathRoutingPrefix = testPathPrefix
		o.SessionCookie = "sandbox-session"
		o.EntryParam = access.DefaultEntryParam
	})
	seen := make(chan seenRequest, 8)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- seenRequest{RequestURI: r.RequestURI, Header: r.Header.Clone()}
		io.WriteString(w, "ok")
	})
	be, other := startBackend(t, handler, false), startBackend(t, handler, false)
	base := "https://router.example"
	prefix := testPathPrefix + "/default/sb1/" + strconv.Itoa(be.port)

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := env.client(viaH2)
	browser.Jar = jar
	r := doRequest(browser, mustRequest(t, http.MethodGet, base+prefix+"/lab?sandbox_token=alice-token", nil))
	if r.status != http.StatusOK {
		t.Fatalf("entry link: %d %q", r.status, r.body)
	}
	if got := recv(t, seen, "the entry link at the sandbox"); got.RequestURI != "/lab" || got.Header.Get("Cookie") != "" {
		t.Fatalf("the sandbox got %q with Cookie %q", got.RequestURI, got.Header.Get("Cookie"))
	}
	u, _ := url.Parse(base + prefix + "/x")
	if cks := jar.Cookies(u); len(cks) != 1 || cks[0].Name != "__Secure-sandbox-session" {
		t.Fatalf("the browser holds %v under the prefix", cks)
	}
	if r := doRequest(browser, mustRequest(t, http.MethodGet, base+prefix+"/api", nil)); r.status != http.StatusOK {
		t.Fatalf("with the cookie: %d %q", r.status, r.body)
	}
	recv(t, seen, "the cookie's request at the sandbox")
	otherPrefix := testPathPrefix + "/default/sb1/" + strconv.Itoa(other.port)
	if r := doRequest(browser, mustRequest(t, http.MethodGet, base+otherPrefix+"/", nil)); r.status != http.StatusUnauthorized {
		t.Fatalf("another sandbox port on the same host: %d %q, want 401", r.status, r.body)
	}
}
