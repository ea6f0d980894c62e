package access

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/sandbox-router/sandbox-router/access/scoped"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// Principal is a caller of the router's own APIs (the MCP endpoint)
// authenticated once and then asked about many sandboxes, where a data
// plane request asks about one. It is what Authenticate learnt: a
// Kubernetes identity, or a scoped token's claims.
type Principal struct {
	Caller
	id     Identity
	claims scoped.Claims // Auth == AuthScopedToken
}

// Authenticate tells who a bearer token belongs to, with the checks a
// request to a sandbox gets before its sandbox is considered: the client
// address's failed-credential limit, then TokenReview (cached) or a
// scoped token's signature and expiry. It refuses with the same *Error
// values (401, 429, 503). A Checker in allow-all mode knows no identities
// and refuses every token.
func (c *Checker) Authenticate(ctx context.Context, token string, client netip.Addr) (Principal, error) {
	if c.limiter != nil {
		if e := c.limiter.blocked(client); e != nil {
			return Principal{}, e
		}
	}
	p, err := c.principal(ctx, token, client)
	if err == errInvalidCredentials && c.limiter != nil {
		c.limiter.failed(client)
	}
	c.metrics.decided(err)
	return p, err
}

func (c *Checker) principal(ctx context.Context, token string, client netip.Addr) (Principal, error) {
	switch {
	case token == "" || len(token) > maxTokenBytes:
		return Principal{}, errInvalidCredentials
	case c.scoped != nil && scoped.IsScoped(token):
		claims, err := c.scoped.Verify(token)
		if err != nil {
			return Principal{}, errInvalidCredentials
		}
		if len(claims.ClientCIDRs) > 0 && !slices.ContainsFunc(claims.ClientCIDRs, func(p netip.Prefix) bool { return client.IsValid() && p.Contains(client.Unmap()) }) {
			return Principal{}, errForbidden // its client addresses do not include this one
		}
		return Principal{Caller: Caller{User: claims.Subject, Auth: AuthScopedToken}, claims: claims}, nil
	case c.tokens == nil:
		return Principal{}, errInvalidCredentials
	}
	id, err := c.authenticate(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	return Principal{Caller: Caller{User: id.User, Groups: id.Groups, Auth: AuthKubernetesToken}, id: id}, nil
}

// Reaches tells whether p may reach sandbox, as a request to it would be
// judged (the same cached SubjectAccessReview, or the scoped token's
// namespace, name and UID); sandbox.Name "" asks about every sandbox of
// the namespace at once (a RoleBinding without resourceNames), which a
// scoped token never grants. It is false, not an error, for a refusal;
// the error is the API server's silence (errUnavailable) or ctx's.
func (c *Checker) Reaches(ctx context.Context, p Principal, sandbox resolver.Key) (bool, error) {
	switch p.Auth {
	case AuthScopedToken:
		cl := p.claims
		if sandbox.Name == "" || cl.Namespace != sandbox.Namespace || cl.Name != sandbox.Name {
			return false, nil
		}
		if !time.Now().Before(cl.Expires) {
			return false, nil // a principal outlives its request: an open stream
		}
		return cl.Version < 2 || cl.UID == c.currentUID(sandbox), nil
	case AuthKubernetesToken:
		if c.access == nil {
			return true, nil // tokenreview: every authenticated caller reaches every sandbox
		}
		err := c.authorize(ctx, p.id, sandbox)
		switch err {
		case nil:
			return true, nil
		case errForbidden:
			return false, nil
		}
		return false, err
	}
	return false, nil
}

// Key names p for what it may reach: every field a decision depends on
// (a Kubernetes identity's user, UID, groups in any order and extra; a
// scoped token's sandbox, the UID it is bound to and its subject), so
// two principals with one key are answered alike.
func (p Principal) Key() string {
	if p.Auth == AuthScopedToken {
		c := p.claims
		return fmt.Sprintf("scoped\x00%d\x00%s\x00%s\x00%s\x00%q", c.Version, c.Namespace, c.Name, c.UID, c.Subject)
	}
	return "kube\x00" + hex.EncodeToString(p.id.digest[:])
}

// Sandbox is the one sandbox a scoped token's principal may reach; false
// for a Kubernetes identity.
func (p Principal) Sandbox() (resolver.Key, bool) {
	if p.Auth != AuthScopedToken {
		return resolver.Key{}, false
	}
	return resolver.Key{Namespace: p.claims.Namespace, Name: p.claims.Name}, true
}

// Kubernetes reports whether p is a Kubernetes identity, whose token the
// API server takes.
func (p Principal) Kubernetes() bool { return p.Auth == AuthKubernetesToken }
