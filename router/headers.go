package router

import (
	"net/http"
	"net/netip"
	"strings"

	"golang.org/x/net/http/httpguts"
)

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
// a client's copy is never forwarded as is.
var routerOwned = map[string]bool{
	HeaderSandboxID:        true,
	HeaderSandboxNamespace: true,
	HeaderSandboxPort:      true,
	HeaderSandboxUID:       true,
	HeaderSandboxPodIP:     true,
	"X-Forwarded-For":      true,
	"X-Forwarded-Host":     true,
	"X-Forwarded-Proto":    true,
	"Forwarded":            true,
	"X-Real-Ip":            true,
	"Host":                 true,
	"Content-Length":       true,
	"Expect":               true,
}

// forwardPolicy decides which request headers reach the sandbox and what
// the router adds.
type forwardPolicy struct {
	trustedProxies       []netip.Prefix
	forwardAuthorization bool
}

// skipRequestHeader reports whether the client header k must not be copied.
// connTokens are the header names listed in the client's Connection header.
func (p *forwardPolicy) skipRequestHeader(k string, connTokens []string) bool {
	if hopHeaders[k] || routerOwned[k] {
		return true
	}
	if k == "Authorization" && !p.forwardAuthorization {
		return true
	}
	if strings.IndexByte(k, '_') >= 0 {
		// CGI-style servers map X-Forwarded_For and X-Forwarded-For to
		// the same variable; dropping underscores (as nginx does)
		// keeps a client from shadowing the router's headers.
		return true
	}
	for _, t := range connTokens {
		if strings.EqualFold(t, k) {
			return true
		}
	}
	return false
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
func (p *forwardPolicy) forwardedFor(r *http.Request) (xff, proto, host string) {
	proto = "http"
	if r.TLS != nil {
		proto = "https"
	}
	host = r.Host
	xff = remoteHost(r.RemoteAddr)
	if len(p.trustedProxies) == 0 {
		return xff, proto, host
	}
	if peer := peerAddr(r); peer.IsValid() && p.trusted(peer) {
		if prior := r.Header["X-Forwarded-For"]; len(prior) > 0 {
			xff = strings.Join(prior, ", ") + ", " + xff
		}
		if v := headerValue(r.Header, "X-Forwarded-Proto"); v == "http" || v == "https" {
			proto = v
		}
		if v := headerValue(r.Header, "X-Forwarded-Host"); v != "" && httpguts.ValidHostHeader(v) {
			host = v
		}
	}
	return xff, proto, host
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

// connectionTokens returns the header names listed in Connection.
func connectionTokens(h http.Header) []string {
	vs := h["Connection"]
	if len(vs) == 0 {
		return nil
	}
	var out []string
	for _, v := range vs {
		for _, t := range strings.Split(v, ",") {
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
func copyResponseHeaders(dst, src http.Header) {
	tokens := connectionTokens(src)
	for k, vv := range src {
		if hopHeaders[k] {
			continue
		}
		skip := false
		for _, t := range tokens {
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
