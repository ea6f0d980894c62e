package sandboxhost

import (
	"errors"
	"strings"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Address is the sandbox a host name names. Port is 0 when the name has no
// <port>- prefix: the caller picks its default.
type Address struct {
	Namespace string
	Name      string
	Port      uint16
}

// The ways a host under a base domain can be malformed. A host that is not
// under any base domain is not an error: it simply does not name a sandbox.
var (
	ErrShape     = errors.New("host must be <id>.<namespace>.<domain> or <port>-<id>.<namespace>.<domain>")
	ErrNamespace = errors.New("namespace must be a DNS-1123 label")
	ErrID        = errors.New("sandbox ID must be a DNS-1123 label")
)

// Domains are the base domains host routing serves, lower-case, without
// leading or trailing dots, longest first so that a more specific domain
// wins. Build it with NewDomains; it is immutable.
type Domains []string

// NewDomains normalises ds: lower case, no surrounding dots, empties
// dropped, longest first.
func NewDomains(ds []string) Domains {
	out := make(Domains, 0, len(ds))
	for _, d := range ds {
		d = strings.Trim(LowerASCII(d), ".")
		if d != "" {
			out = append(out, d)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && len(out[j]) > len(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Parse reads the sandbox a host names. matched is false (and err nil) for
// a host that is not under a base domain, or is a base domain itself: the
// caller falls back to other ways of naming a sandbox. A host under a base
// domain with the wrong shape is an error: guessing would route to the
// wrong sandbox. A trailing :port, a trailing dot and upper case are
// ignored.
//
// A first label of the form <digits>-<rest> is read as port and id when the
// digits are a valid port; sandbox names that start with digits and a dash
// must therefore be addressed with an explicit port prefix
// (8888-123-abc.ns.example.com).
func (d Domains) Parse(host string) (a Address, matched bool, err error) {
	if len(d) == 0 || host == "" {
		return a, false, nil
	}
	host = LowerASCII(strings.TrimSuffix(StripPort(host), "."))
	for _, base := range d {
		if host == base {
			return a, false, nil
		}
		if len(host) <= len(base)+1 || !strings.HasSuffix(host, base) || host[len(host)-len(base)-1] != '.' {
			continue
		}
		rest := host[:len(host)-len(base)-1]
		dot := strings.IndexByte(rest, '.')
		if dot < 0 || strings.IndexByte(rest[dot+1:], '.') >= 0 {
			return a, false, ErrShape
		}
		first, ns := rest[:dot], rest[dot+1:]
		if !resolver.IsDNSLabel(ns) {
			return a, false, ErrNamespace
		}
		if dash := strings.IndexByte(first, '-'); dash > 0 {
			if pt, ok := ParsePort(first[:dash]); ok && resolver.IsDNSLabel(first[dash+1:]) {
				return Address{Namespace: ns, Name: first[dash+1:], Port: pt}, true, nil
			}
		}
		if !resolver.IsDNSLabel(first) {
			return a, false, ErrID
		}
		return Address{Namespace: ns, Name: first}, true, nil
	}
	return a, false, nil
}

// StripPort removes a trailing :port and IPv6 brackets.
func StripPort(h string) string {
	if len(h) > 0 && h[0] == '[' {
		if end := strings.IndexByte(h, ']'); end > 0 {
			return h[1:end]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		return h[:i]
	}
	return h
}

// ParsePort accepts 1..65535 written in decimal without sign or leading
// zeros.
func ParsePort(s string) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 || s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// LowerASCII lower-cases without allocating when the input is already
// lower case.
func LowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
