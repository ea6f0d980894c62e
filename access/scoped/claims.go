package scoped

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Claims are what a verified token says.
type Claims struct {
	// Version is 1 or 2; KeyID names the v2 key that signed it.
	Version int
	KeyID   string
	// Namespace and Name are the sandbox the token is for; UID (v2) pins
	// the instance: a sandbox recreated under the same name has another.
	Namespace string
	Name      string
	UID       string
	// Expires is when the token stops working (exclusive).
	Expires time.Time
	// Subject (v2, optional) says whom the token was issued to or by,
	// e.g. the Kubernetes user who minted it; it grants nothing.
	Subject string
	// The optional limits of a v2 token; empty means any.
	Ports       []uint16
	Methods     []string
	PathPrefix  string
	ClientCIDRs []netip.Prefix
}

// The errors of Verify. Every one means the token is not a valid
// credential (401); whether a valid one fits the request is Permits'.
var (
	ErrMalformed  = errors.New("scoped token: malformed")
	ErrSignature  = errors.New("scoped token: bad signature")
	ErrExpired    = errors.New("scoped token: expired")
	ErrUnknownKey = errors.New("scoped token: unknown key id")
	ErrDisabled   = errors.New("scoped token: this version is not configured")
)

// Request is what of a request a token's limits apply to.
type Request struct {
	Namespace, Name string
	// UID is the sandbox's current UID as the router knows it; empty when
	// the router knows no such sandbox.
	UID    string
	Port   uint16
	Method string
	// Path is the request's path, decoded.
	Path   string
	Client netip.Addr
}

// Permits reports whether the claims allow req.
func (c *Claims) Permits(req Request) bool {
	if c.Namespace != req.Namespace || c.Name != req.Name {
		return false
	}
	if c.Version >= 2 && (c.UID == "" || c.UID != req.UID) {
		return false
	}
	if len(c.Ports) > 0 && !slices.Contains(c.Ports, req.Port) {
		return false
	}
	if len(c.Methods) > 0 && !slices.Contains(c.Methods, req.Method) {
		return false
	}
	if c.PathPrefix != "" && !underPrefix(req.Path, c.PathPrefix) {
		return false
	}
	if len(c.ClientCIDRs) > 0 {
		ok := false
		for _, p := range c.ClientCIDRs {
			if req.Client.IsValid() && p.Contains(req.Client.Unmap()) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// underPrefix reports whether path lies under prefix, refusing any path
// with a dot segment: the sandbox would resolve "/app/../admin" to
// "/admin", outside "/app/". The prefix matches at segment boundaries:
// "/app" covers "/app" and "/app/x", not "/apple".
func underPrefix(path, prefix string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}
