package access

import (
	"cmp"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Sessions let a browser carry a credential: it opens an entry link (the
// credential in a query parameter), the router answers 302 to the same
// URL without it and sets a session cookie holding the credential, and
// the browser's later requests, WebSocket handshakes included, carry the
// cookie. Only for sandboxes a browser can tell apart: reached by host
// name, each sandbox port is an origin of its own and the cookie is
// host-only; reached by path (path routing), the cookie's Path is the
// sandbox port's prefix. On the router's shared host (X-Sandbox-*
// routing) a cookie would reach every sandbox, so none is taken or set.
type Sessions struct {
	// Cookie is the cookie's name ("" turns browser sessions off). Over
	// HTTPS it is sent as "__Host-" + Cookie for a host-routed sandbox
	// (browsers keep it host-only, Secure, at path "/") and as
	// "__Secure-" + Cookie for a path-routed one.
	Cookie string
	// SameSite is the cookie's SameSite attribute: Lax (the default,
	// when zero), Strict, or None (cross-site embedding; only over
	// HTTPS, where the cookie is Secure).
	SameSite http.SameSite
	// EntryParam is the entry link's query parameter (default
	// "sandbox_token").
	EntryParam string
	// AllowedOrigins may send cookie-authenticated requests with unsafe
	// methods and WebSocket handshakes besides the sandbox's own origin
	// (scheme://host[:port]).
	AllowedOrigins []string
	// TrustForwardedProto reads the scheme from X-Forwarded-Proto (the
	// router is behind a TLS-terminating proxy that sets it and strips
	// clients'); otherwise the connection's own.
	TrustForwardedProto bool
}

// DefaultEntryParam is the entry link's query parameter.
const DefaultEntryParam = "sandbox_token"

// source is where a credential came from.
type source uint8

const (
	fromHeader source = iota // Authorization: Bearer
	fromCookie               // the session cookie
	fromEntry                // the entry link's query parameter
)

// credential finds a request's credential: the Authorization header, then
// (for a sandbox reached by host name) the session cookie, then the entry
// link's parameter on a GET or HEAD that is not an upgrade.
func (c *Checker) credential(r *http.Request, hostRouted bool) (token string, from source, present bool) {
	if token, present = bearerToken(r.Header); present {
		return token, fromHeader, true
	}
	s := &c.sessions
	if s.Cookie == "" || !hostRouted {
		return "", fromHeader, false
	}
	if v, ok := sessionCookie(r, s.Cookie); ok {
		if v == "" || len(v) > maxTokenBytes {
			return "", fromCookie, true
		}
		return v, fromCookie, true
	}
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Header.Get("Upgrade") == "" {
		if v, ok := queryValue(r.URL.RawQuery, s.EntryParam); ok {
			if v == "" || len(v) > maxTokenBytes {
				return "", fromEntry, true
			}
			return v, fromEntry, true
		}
	}
	return "", fromHeader, false
}

// sessionCookie reads the session cookie under any of its names.
func sessionCookie(r *http.Request, name string) (string, bool) {
	for _, n := range [3]string{"__Host-" + name, "__Secure-" + name, name} {
		if ck, err := r.Cookie(n); err == nil {
			return ck.Value, true
		}
	}
	return "", false
}

// queryValue reads one query parameter without parsing the whole query.
func queryValue(rawQuery, name string) (string, bool) {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != name {
			continue
		}
		v, err := url.QueryUnescape(v)
		if err != nil {
			return "", true
		}
		return v, true
	}
	return "", false
}

// https reports whether the client reached the router over HTTPS.
func (c *Checker) https(r *http.Request) bool {
	if c.sessions.TrustForwardedProto {
		if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
			return strings.EqualFold(strings.TrimSpace(strings.Split(p, ",")[0]), "https")
		}
	}
	return r.TLS != nil
}

// sameOriginOrAllowed reports whether a cookie-authenticated request that
// changes state (an unsafe method) or opens a WebSocket comes from the
// sandbox's own origin or an allowed one: a page elsewhere can make the
// browser send the cookie (CSRF, cross-site WebSocket hijacking), but not
// forge the Origin header. A request without Origin is a safe method or
// not a browser's.
func (c *Checker) sameOriginOrAllowed(r *http.Request) bool {
	unsafe := r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions
	if !unsafe && r.Header.Get("Upgrade") == "" {
		return true
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme := "http"
	if c.https(r) {
		scheme = "https"
	}
	if strings.EqualFold(origin, scheme+"://"+r.Host) {
		return true
	}
	for _, o := range c.sessions.AllowedOrigins {
		if strings.EqualFold(origin, o) {
			return true
		}
	}
	return false
}

// startSession answers an admitted entry link: 302 to the same URL without
// the credential, with the session cookie holding it (host-only, HttpOnly,
// at sessionPath, Secure over HTTPS, SameSite Lax unless configured, for
// the token's remaining life when it is known). r's path is the
// sandbox's; a path-routed sandbox's prefix is sessionPath.
func (c *Checker) startSession(r *http.Request, sessionPath, token string, expires time.Time) *Error {
	s := &c.sessions
	if !cookieSafe(token) {
		return errNoSession
	}
	ck := &http.Cookie{Name: s.Cookie, Value: token, Path: sessionPath, HttpOnly: true, SameSite: cmp.Or(s.SameSite, http.SameSiteLaxMode)}
	if c.https(r) {
		ck.Secure = true
		if sessionPath == "/" {
			ck.Name = "__Host-" + s.Cookie
		} else {
			ck.Name = "__Secure-" + s.Cookie
		}
	}
	if !expires.IsZero() {
		ck.MaxAge = max(1, int(time.Until(expires).Seconds()))
	}
	u := *r.URL
	u.RawQuery = WithoutParam(u.RawQuery, s.EntryParam)
	// One leading slash: "//host/x" or "/\\host" would send the browser
	// to another site.
	location := strings.TrimSuffix(sessionPath, "/") + "/" + strings.TrimLeft(u.EscapedPath(), "/\\")
	if u.RawQuery != "" {
		location += "?" + u.RawQuery
	}
	h := http.Header{
		"Location":        {location},
		"Set-Cookie":      {ck.String()},
		"Referrer-Policy": {"no-referrer"},
		"Cache-Control":   {"no-store"}, // it carries the credential
	}
	return &Error{Status: http.StatusFound, Code: CodeSessionStarted, Detail: "session started; continue at " + location,
		Headers: h}
}

// WithoutParam removes every name parameter from a raw query, keeping the
// others as they were sent.
func WithoutParam(rawQuery, name string) string {
	if !strings.Contains(rawQuery, name) {
		return rawQuery
	}
	var kept []string
	for kv := range strings.SplitSeq(rawQuery, "&") {
		if k, _, _ := strings.Cut(kv, "="); k != name {
			kept = append(kept, kv)
		}
	}
	return strings.Join(kept, "&")
}

// maxCookieToken keeps a session cookie under the 4096 bytes browsers
// store per cookie, its name and attributes included.
const maxCookieToken = 3800

// cookieSafe reports whether token can be a cookie's value as it is
// (RFC 6265 cookie-octets), short enough for browsers to keep.
func cookieSafe(token string) bool {
	if len(token) > maxCookieToken {
		return false
	}
	for i := 0; i < len(token); i++ {
		b := token[i]
		if b <= ' ' || b >= 0x7f || b == '"' || b == ',' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}
