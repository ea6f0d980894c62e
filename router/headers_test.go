package router

// The header policy, tested once against both upstream protocols, and the
// response side's Connection-named headers.

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// TestOneHeaderPolicyForBothUpstreams: the same hostile request reaches an
// HTTP/1.1 sandbox and an h2c one with the same headers, apart from what
// each protocol's framing adds (Content-Length, "te: trailers").
func TestOneHeaderPolicyForBothUpstreams(t *testing.T) {
	framing := []string{"Content-Length", "Te"}
	seenBy := map[resolver.Protocol]http.Header{}
	for _, proto := range []resolver.Protocol{resolver.ProtocolHTTP1, resolver.ProtocolH2C} {
		env := newProxyEnv(t, nil)
		env.res.set("default", "sb1", resolver.StateRunning, proto)
		be, seen := startRecorder(t, proto == resolver.ProtocolH2C)
		req := "POST /p HTTP/1.1\r\n" +
			"Host: public.example.com\r\n" +
			"X-Sandbox-ID: sb1\r\n" +
			"X-Sandbox-Port: " + strconv.Itoa(be.port) + "\r\n" +
			"X-Sandbox-Timeout: 30\r\n" +
			"X-Sandbox-Anything-Else: router's\r\n" +
			"X-Request-ID: req-1\r\n" +
			"Connection: keep-alive, X-Hop, x-lower-hop\r\n" +
			"X-Hop: 1\r\n" +
			"X-Lower-Hop: 1\r\n" +
			"Keep-Alive: timeout=5\r\n" +
			"TE: trailers\r\n" +
			"Authorization: Bearer secret\r\n" +
			"Proxy-Authorization: Basic eDp5\r\n" +
			"Cookie: a=1\r\n" +
			"X-Forwarded_For: 6.6.6.6\r\n" +
			"X-Forwarded-For: 6.6.6.6\r\n" +
			"Forwarded: for=6.6.6.6\r\n" +
			"X-Multi: one\r\n" +
			"X-Multi: two\r\n" +
			"Content-Length: 2\r\n" +
			"\r\n" +
			"hi"
		resp, _ := rawExchange(t, env.httpAddr, req)
		if resp.StatusCode != 200 {
			t.Fatalf("%v: status %d", proto, resp.StatusCode)
		}
		h := recv(t, seen, "the request at the sandbox").Header
		for _, k := range framing {
			delete(h, k)
		}
		seenBy[proto] = h
	}
	h1, h2 := seenBy[resolver.ProtocolHTTP1], seenBy[resolver.ProtocolH2C]
	keys := func(h http.Header) []string {
		var ks []string
		for k := range h {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	if !slices.Equal(keys(h1), keys(h2)) {
		t.Fatalf("the two upstream protocols got different headers:\nHTTP/1.1: %v\nh2c:      %v", keys(h1), keys(h2))
	}
	for k, v := range h1 {
		if !slices.Equal(v, h2[k]) {
			t.Errorf("%s: HTTP/1.1 got %q, h2c got %q", k, v, h2[k])
		}
	}
	want := []string{"Cookie", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Multi", "X-Request-Id"}
	if got := keys(h1); !slices.Equal(got, want) {
		t.Errorf("headers at the sandbox %v, want %v", got, want)
	}
	if got := h1.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want the peer only", got)
	}
}

// TestConnectionCloseNamesStillStripped: "Connection: close, X-Custom"
// names X-Custom as hop-by-hop like any other list: it must not reach the
// client (net/http drops a Connection header that says close before the
// router sees it).
func TestConnectionCloseNamesStillStripped(t *testing.T) {
	env := newProxyEnv(t, nil)
	heads := []string{
		"Connection: close, X-Custom\r\n",
		"Connection: X-Custom, close\r\n",
		"Connection: close\r\nConnection: X-Custom\r\n",
		"Connection: close,\r\n X-Custom\r\n", // obsolete line folding
	}
	for i, head := range heads {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			origin := startRawOrigin(t, func(c net.Conn, req *http.Request, n int) bool {
				io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nConnection: X-Interim\r\nLink: </a>\r\n\r\n"+
					"HTTP/1.1 200 OK\r\n"+head+"X-Custom: hop\r\nX-Interim: end-to-end here\r\nX-End: kept\r\nContent-Length: 2\r\n\r\nok")
				return false
			})
			for _, proto := range []string{viaH1, viaH2C} {
				r := doRequest(env.client(proto), env.sandboxRequest(context.Background(), proto, http.MethodGet, "/", origin.port, nil))
				if r.err != nil || r.status != 200 || r.body != "ok" {
					t.Fatalf("%s: %d %q %v", proto, r.status, r.body, r.err)
				}
				if v := r.header.Get("X-Custom"); v != "" {
					t.Errorf("%s: X-Custom %q reached the client", proto, v)
				}
				if r.header.Get("X-End") != "kept" || r.header.Get("X-Interim") == "" {
					t.Errorf("%s: end-to-end headers lost: %v", proto, r.header)
				}
			}
		})
	}
}

// TestResponseConnectionTokens reads the names from raw heads.
func TestResponseConnectionTokens(t *testing.T) {
	resp := &http.Response{ProtoMajor: 1, ProtoMinor: 1, Close: true, Header: http.Header{}}
	raw := "HTTP/1.1 100 Continue\r\nConnection: X-Early\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nconnection: close , x-a\r\nX-Other: Connection: x-not\r\nCONNECTION: X-B\n\r\nbody Connection: x-body"
	got := responseConnectionTokens(resp, []byte(raw), 1)
	if want := []string{"Close", "X-A", "X-B"}; !slices.Equal(got, want) {
		t.Fatalf("tokens %v, want %v", got, want)
	}
	resp.Header["Connection"] = []string{"X-C"}
	if got := responseConnectionTokens(resp, nil, 0); !slices.Equal(got, []string{"X-C"}) {
		t.Fatalf("tokens from the parsed header %v", got)
	}
	if got := responseConnectionTokens(&http.Response{ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}}, []byte(raw), 1); got != nil {
		t.Fatalf("a response without Connection: %v", got)
	}
}

// TestCredentialCookiesNeverForwarded: the access session cookie and the
// router's other credential cookies (the dashboard's holds the viewer's
// token, and browsers send a host's cookies to every port of it) are
// taken out of the Cookie header, under any of their prefixes; the rest
// passes.
func TestCredentialCookiesNeverForwarded(t *testing.T) {
	p := &forwardPolicy{credentialCookies: credentialCookies(Options{SessionCookie: "sb-session", CredentialCookies: []string{"sandbox_dashboard_token", "sb-session"}})}
	if len(p.credentialCookies) != 2 {
		t.Fatalf("credential cookies %v", p.credentialCookies)
	}
	h := http.Header{"Cookie": {"sandbox_dashboard_token=eyJ.k8s.token; app=1", "__Host-sandbox_dashboard_token=x; __Secure-sb-session=y; theme=dark"}}
	var got []string
	p.endToEnd(h, func(k string, vv []string) {
		if k == "Cookie" {
			got = append(got, vv...)
		}
	})
	if want := []string{"app=1", "theme=dark"}; !slices.Equal(got, want) {
		t.Fatalf("Cookie to the sandbox %q, want %q", got, want)
	}
}
