package dashboard

import (
	"errors"
	"net/http"
	"strings"
)

// The session cookie carries the bearer token itself, not a session ID:
// any replica of the dashboard takes it without a shared session store,
// and it never outlives what the token allows (the access layer's cached
// TokenReview says who it is on every request, so a revoked or expired
// token stops working at the next review, whatever the cookie's age).
// It is HttpOnly (no script reads it), SameSite=Strict (no other site's
// page sends it), scoped to the dashboard's prefix, and Secure with a
// __Host- (prefix "/") or __Secure- name over HTTPS, so that no plain-HTTP
// page or sibling host can set or read it.

// CookieName is the session cookie's name before its HTTPS form
// (__Host- or __Secure- + it). It holds the viewer's token, and browsers
// send a host's cookies to every port of it: the router must take it out
// of what it forwards to sandboxes (router.Options.CredentialCookies).
const CookieName = "sandbox_dashboard_token"

// maxTokenBytes bounds a token, in a header or in a sign-in: a Kubernetes
// ServiceAccount token is about 1 KiB.
const maxTokenBytes = 8 << 10

// maxCookieBytes is what browsers keep of one cookie's name and value
// together (RFC 6265 asks at least 4096; the major browsers keep that
// much and no more): a longer token would be dropped without a word.
const maxCookieBytes = 4096

var errNoCredential = errors.New("dashboard: no credential")

// secure reports whether the session cookie must be Secure: the
// connection is TLS, or Options.SecureCookies says a proxy terminates it.
func (h *Handler) secure(r *http.Request) bool { return h.opts.SecureCookies || r.TLS != nil }

// cookieName is the session cookie's name on r: over HTTPS the __Host-
// form (host-only, Path=/) at the root, __Secure- under a prefix (a
// __Host- cookie must have Path=/).
func (h *Handler) cookieName(r *http.Request) string {
	switch {
	case !h.secure(r):
		return CookieName
	case h.prefix == "":
		return "__Host-" + CookieName
	default:
		return "__Secure-" + CookieName
	}
}

func (h *Handler) sessionCookie(r *http.Request, token string) *http.Cookie {
	return &http.Cookie{
		Name: h.cookieName(r), Value: token, Path: h.opts.Prefix,
		MaxAge: int(h.opts.SessionMaxAge.Seconds()), HttpOnly: true, Secure: h.secure(r), SameSite: http.SameSiteStrictMode,
	}
}

func (h *Handler) clearedCookie(r *http.Request) *http.Cookie {
	c := h.sessionCookie(r, "")
	c.MaxAge = -1
	return c
}

// credential reads r's token: an Authorization: Bearer header (API
// clients), else the session cookie (browsers). A malformed header is no
// credential, not a reason to look at the cookie.
func (h *Handler) credential(r *http.Request) (string, error) {
	if vs := r.Header.Values("Authorization"); len(vs) > 0 {
		scheme, token, ok := strings.Cut(vs[0], " ")
		token = strings.TrimLeft(token, " ")
		if len(vs) > 1 || !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > maxTokenBytes || strings.ContainsAny(token, " \t") {
			return "", errNoCredential
		}
		return token, nil
	}
	c, err := r.Cookie(h.cookieName(r))
	if err != nil || c.Value == "" || len(c.Value) > maxTokenBytes {
		return "", errNoCredential
	}
	return c.Value, nil
}

// checkCookieToken says why token cannot be signed in with as a cookie
// named name: empty, too long for a browser to keep, or made of
// characters a cookie cannot carry; "" when it can.
func checkCookieToken(token, name string) (code, detail string) {
	switch {
	case token == "":
		return "missing_token", "paste a token"
	case len(token) > maxTokenBytes:
		return "token_too_long", "that is not a Kubernetes token: it is longer than 8 KiB"
	case len(name)+1+len(token) > maxCookieBytes:
		return "token_too_long_for_cookie", "this token is too long for a browser cookie: send it as Authorization: Bearer instead"
	}
	for i := 0; i < len(token); i++ {
		if !isCookieOctet(token[i]) {
			return "token_not_cookie_safe", "this token has characters a cookie cannot carry (is it pasted whole, without spaces?)"
		}
	}
	return "", ""
}

// isCookieOctet is RFC 6265's cookie-octet: printable ASCII but for
// space, double quote, comma, semicolon and backslash.
func isCookieOctet(c byte) bool {
	return c > 0x20 && c < 0x7f && c != '"' && c != ',' && c != ';' && c != '\\'
}
