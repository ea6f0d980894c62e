package router

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/sandboxhost"
)

// The request headers of the existing router contract. SDKs send them
// today; they are validated like everything else from a client and never
// forwarded to the sandbox.
const (
	HeaderSandboxID        = "X-Sandbox-Id"
	HeaderSandboxNamespace = "X-Sandbox-Namespace"
	HeaderSandboxPort      = "X-Sandbox-Port"
	HeaderSandboxUID       = "X-Sandbox-Uid"
	HeaderSandboxPodIP     = "X-Sandbox-Pod-Ip"
)

// DefaultPort is the sandbox port used when neither host nor headers name one.
const DefaultPort = 8888

// routingKey is what a request asks for: which sandbox, which port, and
// optionally which pod address the client believes serves it.
type routingKey struct {
	resolver.Key
	Port  uint16
	PodIP netip.Addr // zero unless X-Sandbox-Pod-IP was sent
	// FromHost is true when the key came from the host name.
	FromHost bool
	// PathPrefix, for a key that came from the path (--path-routing-
	// prefix), is the part of the path that named it, in canonical form
	// (<prefix>/<namespace>/<id>/<port>); restPath is the rest, as sent,
	// which is what the sandbox sees.
	PathPrefix string
	restTarget string
	restURL    *url.URL
}

// sessionPath is where a browser session cookie for this key lives: the
// whole host for a host-routed request (its own origin), the key's path
// prefix for a path-routed one; "" on the router's shared host, where a
// cookie would reach every sandbox and none is taken or set.
func (k *routingKey) sessionPath() string {
	switch {
	case k.FromHost:
		return "/"
	case k.PathPrefix != "":
		return k.PathPrefix
	}
	return ""
}

// keyError is a client mistake in the routing key; it becomes a 400.
type keyError struct {
	code   string
	detail string
}

func (e *keyError) Error() string { return e.detail }

var (
	errMissingID      = &keyError{"missing_sandbox_id", "X-Sandbox-ID header is required"}
	errInvalidID      = &keyError{"invalid_sandbox_id", "sandbox ID must be a DNS-1123 label"}
	errInvalidNS      = &keyError{"invalid_namespace", "namespace must be a DNS-1123 label"}
	errInvalidPort    = &keyError{"invalid_port", "port must be an integer between 1 and 65535"}
	errInvalidUID     = &keyError{"invalid_uid", "sandbox UID must be a UUID"}
	errInvalidPodIP   = &keyError{"invalid_pod_ip", "pod IP must be an IPv4 or IPv6 address"}
	errForbiddenPodIP = &keyError{"forbidden_pod_ip", "pod IP must not be a loopback, link-local, multicast or unspecified address"}
	errInvalidHost    = &keyError{"invalid_host", "host must be <id>.<namespace>.<domain> or <port>-<id>.<namespace>.<domain>"}
	errMalformedHost  = &keyError{"invalid_host", "host is not a valid host name"}
	errInvalidPath    = &keyError{"invalid_path", "a path-routed request's path must be <prefix>/<namespace>/<id>/<port>[/<rest>]"}
)

// keyParser turns a request into a routing key. It is immutable after
// construction and safe for concurrent use.
type keyParser struct {
	// baseDomains are the domains host routing serves.
	baseDomains sandboxhost.Domains
	// allowLoopbackPodIP admits 127.0.0.0/8 and ::1 in X-Sandbox-Pod-IP
	// (tests and the local demo only).
	allowLoopbackPodIP bool
	// ignorePodIP skips X-Sandbox-Pod-IP entirely (PodIPOff).
	ignorePodIP bool
	// pathPrefix turns on path routing: <pathPrefix>/<ns>/<id>/<port>/...
	// ("" = off). It starts with "/" and does not end with one.
	pathPrefix string
}

// parse reads the routing key from the host name first, then from the
// path (when path routing is on), then from the X-Sandbox-* headers.
func (p *keyParser) parse(r *http.Request) (routingKey, *keyError) {
	var k routingKey
	if r.ProtoMajor == 2 && !httpguts.ValidHostHeader(r.Host) {
		// net/http checks an HTTP/1.1 Host header but not an HTTP/2
		// :authority, which is written into the sandbox's Host line.
		return k, errMalformedHost
	}
	addr, matched, herr := p.baseDomains.Parse(r.Host)
	if herr != nil {
		return k, hostError(herr)
	}
	var err *keyError
	h := r.Header
	if !matched && p.pathPrefix != "" {
		if matched, err = p.parsePath(&k, requestTarget(r)); err != nil {
			return k, err
		}
	}
	switch {
	case k.PathPrefix != "":
	case matched:
		k.Name, k.Namespace, k.Port, k.FromHost = addr.Name, addr.Namespace, addr.Port, true
		if k.Port == 0 {
			if k.Port, err = parsePortHeader(h); err != nil {
				return k, err
			}
		}
	default:
		id := headerValue(h, HeaderSandboxID)
		if id == "" {
			return k, errMissingID
		}
		if !resolver.IsDNSLabel(id) {
			return k, errInvalidID
		}
		k.Name = id
		k.Namespace = headerValue(h, HeaderSandboxNamespace)
		if k.Namespace == "" {
			k.Namespace = "default"
		} else if !resolver.IsDNSLabel(k.Namespace) {
			return k, errInvalidNS
		}
		if k.Port, err = parsePortHeader(h); err != nil {
			return k, err
		}
	}
	if uid := headerValue(h, HeaderSandboxUID); uid != "" {
		if !isUUID(uid) {
			return k, errInvalidUID
		}
		// UUIDs are case-insensitive on input; Kubernetes writes them in
		// lower case, and the resolver's index is keyed by that form.
		k.UID = sandboxhost.LowerASCII(uid)
	}
	if ip := headerValue(h, HeaderSandboxPodIP); ip != "" && !p.ignorePodIP {
		addr, err := p.parsePodIP(ip)
		if err != nil {
			return k, err
		}
		k.PodIP = addr
	}
	return k, nil
}

func parsePortHeader(h http.Header) (uint16, *keyError) {
	v := headerValue(h, HeaderSandboxPort)
	if v == "" {
		return DefaultPort, nil
	}
	port, ok := sandboxhost.ParsePort(v)
	if !ok {
		return 0, errInvalidPort
	}
	return port, nil
}

func (p *keyParser) parsePodIP(s string) (netip.Addr, *keyError) {
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, errInvalidPodIP
	}
	addr = addr.Unmap()
	if addr.IsLoopback() && p.allowLoopbackPodIP {
		return addr, nil
	}
	if addr.IsLoopback() || addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() ||
		addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() {
		return netip.Addr{}, errForbiddenPodIP
	}
	return addr, nil
}

// parsePath recognises <prefix>/<namespace>/<id>/<port>[/<rest>] in a
// request target as sent. A path that does not start with the prefix and a
// "/" is not path-routed; one that does and has the wrong shape is an
// error: it asked for path routing, and falling back to headers would
// send it elsewhere. The three segments are compared as sent, not
// decoded: a namespace, a name or a port has nothing to escape, and
// decoding would let "%2F" forge a segment boundary.
func (p *keyParser) parsePath(k *routingKey, target string) (bool, *keyError) {
	path, query, hasQuery := strings.Cut(target, "?")
	rest, ok := strings.CutPrefix(path, p.pathPrefix)
	if !ok || !strings.HasPrefix(rest, "/") {
		return false, nil
	}
	ns, rest, _ := strings.Cut(rest[1:], "/")
	id, rest, _ := strings.Cut(rest, "/")
	portText, rest, _ := strings.Cut(rest, "/")
	if !resolver.IsDNSLabel(ns) {
		return true, errInvalidNS
	}
	if !resolver.IsDNSLabel(id) {
		return true, errInvalidID
	}
	port, valid := sandboxhost.ParsePort(portText)
	if !valid {
		return true, errInvalidPath
	}
	target = "/" + rest
	if hasQuery {
		target += "?" + query
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return true, errInvalidPath
	}
	k.Namespace, k.Name, k.Port = ns, id, port
	k.PathPrefix = p.pathPrefix + "/" + ns + "/" + id + "/" + portText
	k.restTarget, k.restURL = target, u
	return true, nil
}

// ValidPathPrefix reports whether p can be a path routing prefix:
// /<segment>[/<segment>...] of URL-unreserved characters, no dot segments,
// no trailing slash. Compared byte for byte with what clients send, it
// needs no escaping to match.
func ValidPathPrefix(p string) bool {
	if len(p) < 2 || p[0] != '/' {
		return false
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
				return false
			}
		}
	}
	return true
}

// withoutPathPrefix gives the sandbox of a path-routed request the path
// after its prefix, escaping and query as sent.
func withoutPathPrefix(r *http.Request, k *routingKey) *http.Request {
	if k.PathPrefix == "" {
		return r
	}
	r2 := *r
	r2.URL, r2.RequestURI = k.restURL, k.restTarget
	return &r2
}

// hostError is the client error for a host under a base domain that is
// malformed in the grammar of package sandboxhost.
func hostError(err error) *keyError {
	switch err {
	case sandboxhost.ErrNamespace:
		return errInvalidNS
	case sandboxhost.ErrID:
		return errInvalidID
	}
	return errInvalidHost
}

// isUUID accepts the 8-4-4-4-12 hex form Kubernetes uses for UIDs.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
