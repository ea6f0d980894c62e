package router

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/sandbox-router/sandbox-router/access"
)

// The header policy: which headers cross the router, in each direction.
// It is one policy for both upstream protocols: the HTTP/1.1 exchange
// (http1.go) and the HTTP/2 one (h2c.go) each write exactly the client
// headers endToEnd passes and the X-Forwarded-* headers of forwardedFor;
// what else they write is their own framing and connection management
// (Host, Content-Length or chunked, Connection: Upgrade; "te: trailers"
// on HTTP/2).

// hopHeaders are connection-scoped (RFC 9110 section 7.6.1) and never
// forwarded in either direction. Keep-Alive and Proxy-Connection are not in
// the RFC list but are sent by old clients and must not leak either.
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// routerOwned are request headers the router writes itself or consumes;
// a client's copy is never forwarded as is. Every X-Sandbox-* header is
// the router's too (sandboxPrefix).
var routerOwned = map[string]bool{
	"X-Forwarded-For":   true,
	"X-Forwarded-Host":  true,
	"X-Forwarded-Proto": true,
	"Forwarded":         true,
	"X-Real-Ip":         true,
	"Host":              true,
	"Content-Length":    true,
	"Expect":            true,
}

// sandboxPrefix starts the router contract's headers (X-Sandbox-ID,
// -Namespace, -Port, -UID, -Pod-IP, -Timeout, and any later one): they
// are addressed to the router, never to the sandbox.
const sandboxPrefix = "X-Sandbox-"

// forwardPolicy decides which request headers reach the sandbox and what
// the router adds.
type forwardPolicy struct {
	trustedProxies       []netip.Prefix
	forwardAuthorization bool
	// credentialCookies (and "__Host-" or "__Secure-" + each) are
	// credentials for the router or its dashboard: taken out of the
	// Cookie header.
	credentialCookies []string
}

// endToEnd calls emit with each client header the sandbox receives and its
// valid values. It allocates only for a Connection header or a header
// with an invalid value.
func (p *forwardPolicy) endToEnd(h http.Header, emit func(k string, vv []string)) {
	tokens := connectionTokens(h)
	for k, vv := range h {
		if p.skipRequestHeader(k, tokens) {
			continue
		}
		if k == "Cookie" && len(p.credentialCookies) > 0 {
			vv = p.withoutCredentialCookies(vv)
		}
		if vv = validValues(vv); len(vv) > 0 {
			emit(k, vv)
		}
	}
}

// skipRequestHeader reports whether the client header k must not be copied.
// connTokens are the header names listed in the client's Connection header.
func (p *forwardPolicy) skipRequestHeader(k string, connTokens []string) bool {
	if hopHeaders[k] || routerOwned[k] || strings.HasPrefix(k, sandboxPrefix) {
		return true
	}
	if k == "Authorization" && !p.forwardAuthorization {
		return true
	}
	if strings.IndexByte(k, '_') >= 0 || !httpguts.ValidHeaderFieldName(k) {
		// CGI-style servers map X-Forwarded_For and X-Forwarded-For to
		// the same variable; dropping underscores (as nginx does)
		// keeps a client from shadowing the router's headers.
		return true
	}
	for _, t := range connTokens {
		if t == k {
			return true
		}
	}
	return false
}

// withoutCredentialCookies removes the credential cookies from Cookie
// values, reusing vv when none is there.
func (p *forwardPolicy) withoutCredentialCookies(vv []string) []string {
	hasOne := false
	for _, v := range vv {
		for _, name := range p.credentialCookies {
			if strings.Contains(v, name) {
				hasOne = true
				break
			}
		}
	}
	if !hasOne {
		return vv
	}
	out := make([]string, 0, len(vv))
	for _, v := range vv {
		var kept []string
		for pair := range strings.SplitSeq(v, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(pair), "=")
			bare := strings.TrimPrefix(strings.TrimPrefix(name, "__Host-"), "__Secure-")
			if slices.Contains(p.credentialCookies, bare) {
				continue
			}
			if pair = strings.TrimSpace(pair); pair != "" {
				kept = append(kept, pair)
			}
		}
		if len(kept) > 0 {
			out = append(out, strings.Join(kept, "; "))
		}
	}
	return out
}

// validValues returns vv without the values that could break a header
// line (CR, LF, NUL), reusing vv when all are valid.
func validValues(vv []string) []string {
	for i, v := range vv {
		if httpguts.ValidHeaderFieldValue(v) {
			continue
		}
		out := append(make([]string, 0, len(vv)-1), vv[:i]...)
		for _, v := range vv[i+1:] {
			if httpguts.ValidHeaderFieldValue(v) {
				out = append(out, v)
			}
		}
		return out
	}
	return vv
}

// The identity headers (Options.IdentityHeaders): who called, as Access
// admitted the request. Under the X-Sandbox- prefix, so a client's copies
// never reach the sandbox.
const (
	HeaderCallerUser   = "X-Sandbox-Caller-User"
	HeaderCallerGroups = "X-Sandbox-Caller-Groups"
	HeaderCallerAuth   = "X-Sandbox-Caller-Auth"
)

// forwarded holds the headers the router adds to one request: the
// X-Forwarded-* values, and the caller when the sandbox is told.
type forwarded struct {
	xff, proto, host string
	// caller, by value: a pointer to the request's record would make the
	// record escape to the heap on every request. Auth "": not told.
	caller access.Caller
}

// each calls emit with the router's headers that have a valid value.
func (f *forwarded) each(emit func(k, v string)) {
	for _, kv := range [...][2]string{{"X-Forwarded-For", f.xff}, {"X-Forwarded-Proto", f.proto}, {"X-Forwarded-Host", f.host}} {
		if kv[1] != "" && httpguts.ValidHeaderFieldValue(kv[1]) {
			emit(kv[0], kv[1])
		}
	}
	if c := &f.caller; c.Auth != "" {
		emit(HeaderCallerAuth, c.Auth)
		if c.User != "" && httpguts.ValidHeaderFieldValue(c.User) {
			emit(HeaderCallerUser, c.User)
		}
		if g := joinGroups(c.Groups); g != "" {
			emit(HeaderCallerGroups, g)
		}
	}
}

// joinGroups lists groups comma-separated, leaving out any name that a
// comma-separated list cannot carry unambiguously.
func joinGroups(groups []string) string {
	var b strings.Builder
	for _, g := range groups {
		if g == "" || strings.IndexByte(g, ',') >= 0 || g != strings.TrimSpace(g) || !httpguts.ValidHeaderFieldValue(g) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(g)
	}
	return b.String()
}

// trusted reports whether the peer may vouch for X-Forwarded-* values.
func (p *forwardPolicy) trusted(peer netip.Addr) bool {
	for _, pfx := range p.trustedProxies {
		if pfx.Contains(peer) {
			return true
		}
	}
	return false
}

// forwardedFor computes X-Forwarded-For, -Proto and -Host for the request.
// A client's own values are kept (and extended) only when it is a trusted
// proxy; otherwise they are replaced, so a client cannot forge its origin.
func (p *forwardPolicy) forwardedFor(r *http.Request) forwarded {
	f := forwarded{proto: "http", host: r.Host, xff: remoteHost(r.RemoteAddr)}
	if r.TLS != nil {
		f.proto = "https"
	}
	if len(p.trustedProxies) == 0 {
		return f
	}
	if peer := peerAddr(r); peer.IsValid() && p.trusted(peer) {
		if prior := r.Header["X-Forwarded-For"]; len(prior) > 0 {
			f.xff = strings.Join(prior, ", ") + ", " + f.xff
		}
		if v := headerValue(r.Header, "X-Forwarded-Proto"); v == "http" || v == "https" {
			f.proto = v
		}
		if v := headerValue(r.Header, "X-Forwarded-Host"); v != "" && httpguts.ValidHostHeader(v) {
			f.host = v
		}
	}
	return f
}

// remoteHost is the address part of a RemoteAddr ("1.2.3.4:5678",
// "[::1]:5678"), sliced without allocating.
func remoteHost(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr
	}
	h := addr[:i]
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return h
}

// peerAddr parses the connection's remote address without allocating.
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// connectionTokens returns the header names listed in Connection values,
// canonicalized.
func connectionTokens(h http.Header) []string {
	return appendConnectionTokens(nil, h["Connection"])
}

func appendConnectionTokens(out []string, values []string) []string {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, http.CanonicalHeaderKey(t))
			}
		}
	}
	return out
}

// upgradeType returns the protocol a client asks to switch to, or "".
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return headerValue(h, "Upgrade")
}

// copyResponseHeaders copies an upstream response's end-to-end headers.
// connTokens are the names its Connection header listed (net/http removes
// a Connection header that says close before the router sees it, so the
// HTTP/1.1 exchange reads them from the raw head).
func copyResponseHeaders(dst, src http.Header, connTokens []string) {
	for k, vv := range src {
		if hopHeaders[k] {
			continue
		}
		skip := false
		for _, t := range connTokens {
			if t == k {
				skip = true
				break
			}
		}
		if !skip {
			dst[k] = vv
		}
	}
}

// confineResponse keeps what a sandbox's response sets to the sandbox,
// when the browser reaches it by host or path: every sandbox port is then
// a site of its own (an origin, or a path prefix on the router's), and a
// cookie or a redirect must not reach past it. On the router's shared
// host (X-Sandbox-* routing, not a browser's way) it changes nothing.
func confineResponse(h http.Header, k *routingKey) {
	if !k.FromHost && k.PathPrefix == "" {
		return
	}
	if vv, ok := h["Set-Cookie"]; ok {
		h["Set-Cookie"] = confineCookies(vv, k.PathPrefix)
	}
	if k.PathPrefix != "" {
		// A redirect to one of the sandbox's own paths stays under its
		// prefix, as the browser sees it.
		if loc := headerValue(h, "Location"); isOwnPath(loc) {
			h["Location"] = []string{k.PathPrefix + loc}
		}
	}
}

// isOwnPath reports whether a Location is a path on the same host: "/x",
// not "//host/x" nor "/\\host/x", which browsers read as another host.
func isOwnPath(loc string) bool {
	return loc == "/" || len(loc) > 1 && loc[0] == '/' && loc[1] != '/' && loc[1] != '\\'
}

// confineCookies rewrites a sandbox's Set-Cookie values. The Domain
// attribute goes: a cookie for the parent domain would reach the sandbox's
// siblings (and could overwrite their sessions), without it a cookie stays
// with the host that set it. Under path routing (pathPrefix set) every
// cookie's Path is put under the prefix, a missing one set to it: all
// sandboxes share the router's host there, and only the path keeps them
// apart.
func confineCookies(vv []string, pathPrefix string) []string {
	if pathPrefix == "" && !slices.ContainsFunc(vv, func(v string) bool { return strings.Contains(strings.ToLower(v), "domain") }) {
		return vv
	}
	out := make([]string, 0, len(vv))
	for _, v := range vv {
		attrs := strings.Split(v, ";")
		kept := make([]string, 1, len(attrs)+1)
		kept[0] = attrs[0]
		hasPath := false
		for _, attr := range attrs[1:] {
			name, value, _ := strings.Cut(strings.TrimSpace(attr), "=")
			switch {
			case strings.EqualFold(name, "Domain"):
				continue
			case pathPrefix != "" && strings.EqualFold(name, "Path"):
				hasPath = true
				value = strings.TrimSpace(value)
				if value == "/" || !strings.HasPrefix(value, "/") {
					// "/" is the whole sandbox; a Path not starting with
					// "/" is ignored by browsers, which would then use a
					// default that may lie above the prefix.
					value = ""
				}
				attr = " Path=" + pathPrefix + value
			}
			kept = append(kept, attr)
		}
		if pathPrefix != "" && !hasPath {
			kept = append(kept, " Path="+pathPrefix)
		}
		out = append(out, strings.Join(kept, ";"))
	}
	return out
}

// headerValue reads a canonical header without allocating.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// credentialCookies are the cookie names the sandbox never gets: the
// access session cookie and the router's other credential cookies.
func credentialCookies(opts Options) []string {
	var out []string
	if opts.SessionCookie != "" {
		out = append(out, opts.SessionCookie)
	}
	for _, c := range opts.CredentialCookies {
		if c != "" && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}
