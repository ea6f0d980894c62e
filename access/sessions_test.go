package access

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func newSessionChecker(t *testing.T, f *fakeAuthority) *Checker {
	t.Helper()
	c, err := New(Options{Modes: []Mode{ModeKubernetes}, Tokens: f, Access: f, Metrics: NewMetrics(prometheus.NewRegistry()),
		Sessions: Sessions{Cookie: "sandbox-session", AllowedOrigins: []string{"https://ide.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func browserRequest(method, target string, mod func(*http.Request)) *http.Request {
	r, _ := http.NewRequest(method, "http://8888-sb1.team-a.sandbox.test"+target, nil)
	r.Host = "8888-sb1.team-a.sandbox.test"
	r.RequestURI = target
	if mod != nil {
		mod(r)
	}
	return r
}

func TestEntryLinkStartsASession(t *testing.T) {
	c := newSessionChecker(t, newAuthority())
	for _, tc := range []struct {
		name       string
		tls        bool
		target     string
		wantCookie string
		wantLoc    string
	}{
		{"http", false, "/lab?sandbox_token=alice-token&x=1", "sandbox-session=alice-token", "/lab?x=1"},
		{"https", true, "/lab/?x=1&sandbox_token=alice-token", "__Host-sandbox-session=alice-token", "/lab/?x=1"},
		{"only the param", false, "/?sandbox_token=alice-token", "sandbox-session=alice-token", "/"},
		{"no way off the site", false, "//evil.example/x?sandbox_token=alice-token", "sandbox-session=alice-token", "/evil.example/x"},
		{"nor by backslash", false, "/%5Cevil.example?sandbox_token=alice-token", "sandbox-session=alice-token", "/%5Cevil.example"},
	} {
		r := browserRequest(http.MethodGet, tc.target, func(r *http.Request) {
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
		})
		_, err := c.Check(context.Background(), r, sbA, 8888, "/")
		e, ok := err.(*Error)
		if !ok || e.Status != http.StatusFound || e.Code != CodeSessionStarted {
			t.Fatalf("%s: %v, want 302", tc.name, err)
		}
		if got := e.Headers.Get("Location"); got != tc.wantLoc {
			t.Errorf("%s: Location %q, want %q", tc.name, got, tc.wantLoc)
		}
		ck := e.Headers.Get("Set-Cookie")
		for _, want := range []string{tc.wantCookie, "Path=/", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(ck, want) {
				t.Errorf("%s: Set-Cookie %q lacks %q", tc.name, ck, want)
			}
		}
		if strings.Contains(ck, "Domain") || strings.Contains(ck, "Secure") != tc.tls {
			t.Errorf("%s: Set-Cookie %q: host-only, Secure exactly over HTTPS", tc.name, ck)
		}
	}
	// A bad entry token is refused, without a cookie.
	_, err := c.Check(context.Background(), browserRequest(http.MethodGet, "/?sandbox_token=guess", nil), sbA, 8888, "/")
	if code(err) != CodeInvalidCredentials {
		t.Fatalf("a bad entry token: %v", err)
	}
	// A token for another sandbox is refused too.
	_, err = c.Check(context.Background(), browserRequest(http.MethodGet, "/?sandbox_token=bob-token", nil), sbA, 8888, "/")
	if code(err) != CodeForbidden {
		t.Fatalf("bob's entry token: %v", err)
	}
}

func TestSessionCookie(t *testing.T) {
	c := newSessionChecker(t, newAuthority())
	withCookie := func(method, origin string) *http.Request {
		return browserRequest(method, "/api", func(r *http.Request) {
			r.Header.Set("Cookie", "theme=dark; sandbox-session=alice-token")
			if origin != "" {
				r.Header.Set("Origin", origin)
			}
		})
	}
	cases := []struct {
		name, method, origin string
		sessionPath          string
		want                 string
	}{
		{"GET", http.MethodGet, "", "/", "allowed"},
		{"POST from its own origin", http.MethodPost, "http://8888-sb1.team-a.sandbox.test", "/", "allowed"},
		{"POST from an allowed origin", http.MethodPost, "https://ide.example.com", "/", "allowed"},
		{"POST from another sandbox", http.MethodPost, "http://8888-sb2.team-a.sandbox.test", "/", CodeCrossOrigin},
		{"POST from elsewhere", http.MethodPost, "https://evil.example", "/", CodeCrossOrigin},
		{"DELETE without Origin", http.MethodDelete, "", "/", "allowed"},
		{"on the shared host no cookie counts", http.MethodGet, "", "", CodeMissingCredentials},
		{"path-routed GET", http.MethodGet, "", "/sandboxes/team-a/sb1/8888", "allowed"},
	}
	for _, tc := range cases {
		_, err := c.Check(context.Background(), withCookie(tc.method, tc.origin), sbA, 8888, tc.sessionPath)
		if got := code(err); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	// A WebSocket handshake with the cookie from another origin.
	ws := withCookie(http.MethodGet, "https://evil.example")
	ws.Header.Set("Upgrade", "websocket")
	ws.Header.Set("Connection", "Upgrade")
	if _, err := c.Check(context.Background(), ws, sbA, 8888, "/"); code(err) != CodeCrossOrigin {
		t.Errorf("cross-site WebSocket with the cookie: %v", err)
	}
	// Sec-Fetch-Site: cross-site refuses even without Origin.
	xs := withCookie(http.MethodPost, "")
	xs.Header.Set("Sec-Fetch-Site", "cross-site")
	if _, err := c.Check(context.Background(), xs, sbA, 8888, "/"); code(err) != CodeCrossOrigin {
		t.Errorf("Sec-Fetch-Site cross-site: %v", err)
	}
	// A bearer header wins over the cookie and is not held to the origin.
	h := withCookie(http.MethodPost, "https://evil.example")
	h.Header.Set("Authorization", "Bearer alice-token")
	if _, err := c.Check(context.Background(), h, sbA, 8888, "/"); err != nil {
		t.Errorf("a bearer header from another origin: %v", err)
	}
}

func TestWithoutParam(t *testing.T) {
	for in, want := range map[string]string{
		"sandbox_token=a":                 "",
		"x=1&sandbox_token=a&y=2":         "x=1&y=2",
		"sandbox_token=a&sandbox_token=b": "",
		"sandbox_tokens=a&x=%20":          "sandbox_tokens=a&x=%20",
		"x=1":                             "x=1",
	} {
		if got := WithoutParam(in, "sandbox_token"); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func FuzzQueryValue(f *testing.F) {
	for _, s := range []string{"a=1&sandbox_token=x", "sandbox_token=%zz", "&&=&", "sandbox_token"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		v, ok := queryValue(q, "sandbox_token")
		if !ok && v != "" {
			t.Fatalf("%q: value %q without the param", q, v)
		}
		if strings.Contains(WithoutParam(q, "sandbox_token")+"&", "sandbox_token=") &&
			!strings.Contains(q, "sandbox_token=") {
			t.Fatalf("%q: WithoutParam made a param", q)
		}
	})
}

// A token a cookie cannot carry as it is gets a clear 400, not a cookie
// the browser would mangle or drop.
func TestEntryLinkTokenACookieCannotCarry(t *testing.T) {
	f := newAuthority()
	long := strings.Repeat("a", maxCookieToken+1)
	f.tokens["with space"] = Identity{User: "alice"}
	f.tokens[long] = Identity{User: "alice"}
	c := newSessionChecker(t, f)
	for _, tok := range []string{"with%20space", long} {
		_, err := c.Check(context.Background(), browserRequest(http.MethodGet, "/?sandbox_token="+tok, nil), sbA, 8888, "/")
		if e, ok := err.(*Error); !ok || e.Status != http.StatusBadRequest || e.Code != CodeNoSession {
			t.Fatalf("%.20s: %v, want 400 %s", tok, err, CodeNoSession)
		}
	}
}

// Under path routing the cookie lives at the sandbox port's prefix (and is
// __Secure-, not __Host-, over HTTPS: a __Host- cookie must be at "/"),
// and the 302 goes back under the prefix. r's path is the sandbox's, the
// prefix removed, as the router passes it.
func TestEntryLinkUnderPathRouting(t *testing.T) {
	c := newSessionChecker(t, newAuthority())
	const prefix = "/sandboxes/team-a/sb1/8888"
	for _, tc := range []struct {
		tls        bool
		wantCookie string
	}{{false, "sandbox-session=alice-token"}, {true, "__Secure-sandbox-session=alice-token"}} {
		r := browserRequest(http.MethodGet, "/lab?sandbox_token=alice-token&x=1", func(r *http.Request) {
			r.Host = "router.example.com"
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
		})
		_, err := c.Check(context.Background(), r, sbA, 8888, prefix)
		e, ok := err.(*Error)
		if !ok || e.Status != http.StatusFound {
			t.Fatalf("%v, want 302", err)
		}
		if got := e.Headers.Get("Location"); got != prefix+"/lab?x=1" {
			t.Errorf("Location %q", got)
		}
		ck := e.Headers.Get("Set-Cookie")
		if !strings.HasPrefix(ck, tc.wantCookie) || !strings.Contains(ck, "Path="+prefix+";") || strings.Contains(ck, "Secure") != tc.tls {
			t.Errorf("Set-Cookie %q", ck)
		}
		if e.Headers.Get("Cache-Control") != "no-store" {
			t.Errorf("the 302 carries the credential and must not be stored")
		}
	}
	// The cookie under its path-routing name opens the sandbox.
	r := browserRequest(http.MethodGet, "/x", func(r *http.Request) {
		r.Header.Set("Cookie", "__Secure-sandbox-session=alice-token")
	})
	if _, err := c.Check(context.Background(), r, sbA, 8888, prefix); err != nil {
		t.Fatalf("the __Secure- cookie: %v", err)
	}
}
