package dashboard

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"
)

// fakeAuth signs in the tokens it knows, each seeing one namespace; a few
// tokens stand for the other answers.
type fakeAuth map[string]string // token -> the namespace its viewer sees

var errUnknownToken = errors.New("unknown token")

func (f fakeAuth) Viewer(_ context.Context, token string, _ netip.Addr) (Viewer, error) {
	switch token {
	case "banned":
		return nil, ErrForbidden
	case "down":
		return nil, ErrUnavailable
	case "hammered":
		return nil, ErrRateLimited
	}
	ns, ok := f[token]
	if !ok {
		return nil, errUnknownToken
	}
	return namedViewer{ns: ns, user: "user-of-" + ns}, nil
}

type namedViewer struct{ ns, user string }

func (v namedViewer) MayList(_ context.Context, _ Resource, ns string) bool { return ns == v.ns }
func (v namedViewer) MayGet(context.Context, string, string) bool           { return false }
func (v namedViewer) UserName() string                                      { return v.user }

var testAuth = fakeAuth{"alpha-token": "alpha", "beta-token": "beta"}

// call sends one request to h as a browser on http://example.com would.
func call(h http.Handler, method, target, body string, mod func(*http.Request)) *httptest.ResponseRecorder {
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, target, nil)
	} else {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	}
	if method == http.MethodPost {
		r.Header.Set("Origin", "http://example.com")
	}
	if mod != nil {
		mod(r)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func signInBody(token, next string) string {
	b, _ := json.Marshal(map[string]string{"token": token, "next": next})
	return string(b)
}

func errorCode(rec *httptest.ResponseRecorder) string {
	var e struct{ Code string }
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	return e.Code
}

func withCookie(c *http.Cookie) func(*http.Request) {
	return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value}) }
}

func TestAuthAndViewerExclusive(t *testing.T) {
	_, err := New(Options{Sandboxes: fixture(), Auth: testAuth, Viewer: headerViewer})
	if err == nil {
		t.Fatal("New took both Auth and Viewer")
	}
}

func TestSignInAndOut(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture(), Auth: testAuth, Prefix: "/dash/"})

	// Nothing without a credential, the event stream included.
	for _, p := range []string{"/dash/api/sandboxes", "/dash/api/overview", "/dash/api/events", "/dash/api/sandboxes/alpha/web-1", "/dash/api/session"} {
		rec := call(h, http.MethodGet, p, "", nil)
		if rec.Code != http.StatusUnauthorized || errorCode(rec) != "unauthenticated" || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("%s without a credential: %d %s", p, rec.Code, rec.Body)
		}
	}
	if rec := call(h, http.MethodGet, "/dash/signin", "", nil); rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("signin page: %d", rec.Code)
	}

	rec := call(h, http.MethodPost, "/dash/api/session", signInBody("alpha-token", "/dash/sandboxes?state=running"), nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("sign-in: %d %s", rec.Code, rec.Body)
	}
	var ans sessionAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || ans.User != "user-of-alpha" || ans.Next != "/dash/sandboxes?state=running" || !ans.SignIn {
		t.Fatalf("sign-in answer %s", rec.Body)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	c := cookies[0]
	if c.Name != CookieName || c.Value != "alpha-token" || c.Path != "/dash/" || !c.HttpOnly || c.Secure ||
		c.SameSite != http.SameSiteStrictMode || c.MaxAge != int(DefaultSessionMaxAge/time.Second) {
		t.Fatalf("cookie %+v", c)
	}

	// The cookie and a bearer header are both a viewer's credential.
	for _, mod := range []func(*http.Request){withCookie(c), func(r *http.Request) { r.Header.Set("Authorization", "Bearer beta-token") }} {
		var table struct{ Rows []Row }
		rec := call(h, http.MethodGet, "/dash/api/sandboxes", "", mod)
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &table) != nil || len(table.Rows) == 0 {
			t.Fatalf("table: %d %s", rec.Code, rec.Body)
		}
		ns := table.Rows[0].Namespace
		for _, row := range table.Rows {
			if row.Namespace != ns {
				t.Fatalf("rows of %s and %s", ns, row.Namespace)
			}
		}
	}
	rec = call(h, http.MethodGet, "/dash/api/session", "", withCookie(c))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"user":"user-of-alpha"`) {
		t.Fatalf("api/session: %d %s", rec.Code, rec.Body)
	}
	// A malformed header is no credential, whatever the cookie.
	rec = call(h, http.MethodGet, "/dash/api/overview", "", func(r *http.Request) {
		withCookie(c)(r)
		r.Header.Set("Authorization", "Basic Zm9v")
	})
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("a Basic header: %d", rec.Code)
	}

	rec = call(h, http.MethodPost, "/dash/api/session/end", "", withCookie(c))
	cleared := rec.Result().Cookies()
	if rec.Code != http.StatusNoContent || len(cleared) != 1 || cleared[0].Name != c.Name || cleared[0].MaxAge >= 0 || cleared[0].Path != "/dash/" {
		t.Fatalf("sign-out: %d %v", rec.Code, cleared)
	}
}

func TestSignInForm(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture(), Auth: testAuth})
	form := url.Values{"token": {"alpha-token"}, "next": {"//evil.example/"}}.Encode()
	rec := call(h, http.MethodPost, "/api/session", form, func(r *http.Request) {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" || len(rec.Result().Cookies()) != 1 {
		t.Fatalf("form sign-in: %d %q", rec.Code, rec.Header().Get("Location"))
	}
}

func TestSignInRefusals(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture(), Auth: testAuth})
	cases := []struct {
		name   string
		body   string
		mod    func(*http.Request)
		status int
		code   string
	}{
		{"unknown token", signInBody("nope", ""), nil, http.StatusUnauthorized, "unauthenticated"},
		{"forbidden", signInBody("banned", ""), nil, http.StatusForbidden, "forbidden"},
		{"authority away", signInBody("down", ""), nil, http.StatusServiceUnavailable, "unavailable"},
		{"rate limited", signInBody("hammered", ""), nil, http.StatusTooManyRequests, "rate_limited"},
		{"no token", signInBody("", ""), nil, http.StatusBadRequest, "missing_token"},
		{"over 8 KiB", signInBody(strings.Repeat("a", 8<<10+1), ""), nil, http.StatusBadRequest, "token_too_long"},
		{"too long for a cookie", signInBody(strings.Repeat("a", 4090), ""), nil, http.StatusBadRequest, "token_too_long_for_cookie"},
		{"not cookie-safe", signInBody("alpha token", ""), nil, http.StatusBadRequest, "token_not_cookie_safe"},
		{"body too large", `{"token":"` + strings.Repeat("a", maxSignInBody) + `"}`, nil, http.StatusRequestEntityTooLarge, "too_large"},
		{"not JSON", `{"token":`, nil, http.StatusBadRequest, "bad_request"},
		{"other content type", "token=x", func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }, http.StatusUnsupportedMediaType, "bad_content_type"},
		// Cross-site: login CSRF.
		{"other origin", signInBody("alpha-token", ""), func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }, http.StatusForbidden, "cross_origin"},
		{"no origin at all", signInBody("alpha-token", ""), func(r *http.Request) { r.Header.Del("Origin") }, http.StatusForbidden, "cross_origin"},
		{"null origin", signInBody("alpha-token", ""), func(r *http.Request) { r.Header.Set("Origin", "null") }, http.StatusForbidden, "cross_origin"},
		{"cross-site fetch", signInBody("alpha-token", ""), func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }, http.StatusForbidden, "cross_origin"},
		{"same-site, not same-origin", signInBody("alpha-token", ""), func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "same-site") }, http.StatusForbidden, "cross_origin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := call(h, http.MethodPost, "/api/session", tc.body, tc.mod)
			if rec.Code != tc.status || errorCode(rec) != tc.code {
				t.Fatalf("%d %s, want %d %s", rec.Code, rec.Body, tc.status, tc.code)
			}
			if len(rec.Result().Cookies()) != 0 {
				t.Fatal("a refused sign-in set a cookie")
			}
		})
	}
	// Sec-Fetch-Site same-origin is enough, whatever Origin says (the
	// browser sets it; no page can).
	rec := call(h, http.MethodPost, "/api/session", signInBody("alpha-token", ""), func(r *http.Request) {
		r.Header.Del("Origin")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	})
	if rec.Code != http.StatusOK {
		t.Fatalf("same-origin fetch: %d %s", rec.Code, rec.Body)
	}
	if rec := call(h, http.MethodPost, "/api/session/end", "", func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }); rec.Code != http.StatusForbidden {
		t.Fatalf("cross-site sign-out: %d", rec.Code)
	}
}

func TestSecureCookie(t *testing.T) {
	cases := []struct {
		prefix  string
		secure  bool // Options.SecureCookies
		tls     bool
		origin  string
		name    string
		refused bool
	}{
		{"/", true, false, "https://example.com", "__Host-" + CookieName, false},
		{"/dash/", true, false, "https://example.com", "__Secure-" + CookieName, false},
		{"/", false, true, "https://example.com", "__Host-" + CookieName, false},
		{"/", true, false, "http://example.com", "", true}, // an http page cannot be this https origin
		{"/", false, false, "https://example.com", CookieName, false},
	}
	for _, tc := range cases {
		h := start(t, Options{Sandboxes: fixture(), Auth: testAuth, Prefix: tc.prefix, SecureCookies: tc.secure})
		rec := call(h, http.MethodPost, tc.prefix+"api/session", signInBody("alpha-token", ""), func(r *http.Request) {
			r.Header.Set("Origin", tc.origin)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
		})
		if tc.refused {
			if rec.Code != http.StatusForbidden {
				t.Fatalf("%+v: %d", tc, rec.Code)
			}
			continue
		}
		cs := rec.Result().Cookies()
		if rec.Code != http.StatusOK || len(cs) != 1 || cs[0].Name != tc.name || cs[0].Secure != (tc.secure || tc.tls) || cs[0].Path != tc.prefix {
			t.Fatalf("%+v: %d %v", tc, rec.Code, cs)
		}
		// The cookie is read back under the same name.
		rec = call(h, http.MethodGet, tc.prefix+"api/session", "", func(r *http.Request) {
			withCookie(cs[0])(r)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
		})
		if rec.Code != http.StatusOK {
			t.Fatalf("%+v: reading the cookie back: %d", tc, rec.Code)
		}
	}
}

func TestWithoutSignIn(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture()})
	if rec := call(h, http.MethodGet, "/api/session", "", nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"signIn":false`) {
		t.Fatalf("api/session: %d %s", rec.Code, rec.Body)
	}
	if rec := call(h, http.MethodGet, "/signin", "", nil); rec.Code != http.StatusNotFound {
		t.Fatalf("signin page without Auth: %d", rec.Code)
	}
	if rec := call(h, http.MethodPost, "/api/session", signInBody("alpha-token", ""), nil); rec.Code == http.StatusOK {
		t.Fatal("signed in without Auth")
	}
}

func TestSafeNext(t *testing.T) {
	cases := map[string]string{
		"":                                "/d/",
		"/d/":                             "/d/",
		"/d/sandboxes?state=running#top":  "/d/sandboxes?state=running#top",
		"/d/sandbox?namespace=a&name=%2F": "/d/sandbox?namespace=a&name=%2F",
		"/elsewhere":                      "/d/",
		"/d":                              "/d/",
		"https://evil.example/d/":         "/d/",
		"//evil.example/d/":               "/d/",
		"/d//evil.example":                "/d/",
		"/d/\\evil.example":               "/d/",
		"/d/../admin":                     "/d/",
		"/d/%2e%2e/admin":                 "/d/",
		"/d/./x":                          "/d/",
		"/d/x\r\nSet-Cookie: a=b":         "/d/",
		"/d/x\t":                          "/d/",
		"/d/é":                            "/d/",
		"/d/" + strings.Repeat("a", 3000): "/d/",
	}
	for in, want := range cases {
		if got := safeNext("/d/", in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
	if got := safeNext("/", "//evil.example"); got != "/" {
		t.Errorf("root prefix: %q", got)
	}
}

// FuzzSafeNext: whatever comes in, what comes out is a path under the
// prefix that no browser reads as another origin or another place.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/d/sandboxes?x=1", "//evil", "/d/..", "/d/%2e%2e/", "/d/\\x", "/d/a#b", "/d/a?//b"} {
		f.Add("/d/", s)
		f.Add("/", s)
	}
	f.Fuzz(func(t *testing.T, prefix, next string) {
		if prefix != "/" {
			prefix = "/d/"
		}
		got := safeNext(prefix, next)
		if got != next && got != prefix {
			t.Fatalf("rewrote %q to %q", next, got)
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
			t.Fatalf("%q parses as %+v (%v)", got, u, err)
		}
		if strings.ContainsAny(got, "\\") || strings.Contains(u.EscapedPath(), "//") {
			t.Fatalf("%q", got)
		}
		for _, c := range got {
			if c <= 0x20 || c >= 0x7f {
				t.Fatalf("%q has %q", got, c)
			}
		}
		if clean := path.Clean(u.Path) + "/"; !strings.HasPrefix(clean, prefix) && clean != prefix {
			t.Fatalf("%q leaves %q (%q)", got, prefix, clean)
		}
	})
}

// TestSignInPage: the token field is labelled, described and a password
// field; the form posts to api/session; no inline script or style.
func TestSignInPage(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture(), Auth: testAuth})
	rec := call(h, http.MethodGet, "/signin", "", nil)
	checkSecurityHeaders(t, "/signin", rec.Header())
	body := rec.Body.String()
	for _, want := range []string{`<label for="token">`, `id="token" name="token" type="password"`, `aria-describedby="token-hint"`,
		`action="api/session"`, `method="post"`, `id="error"`, `role="alert"`, `kubectl create token`, `<script src="static/app.js" defer></script>`} {
		if !strings.Contains(body, want) {
			t.Errorf("signin page lacks %s", want)
		}
	}
	for _, banned := range []string{"<script>", "style=", " onclick", " onsubmit"} {
		if strings.Contains(body, banned) {
			t.Errorf("signin page has %s", banned)
		}
	}
}
