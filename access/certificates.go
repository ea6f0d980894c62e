package access

import (
	"context"
	"crypto/x509"
	"net/http"
	"slices"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// A client certificate (mTLS, verified by the HTTPS listener against its
// client CA) names an identity the way Kubernetes reads x509 users: the
// subject's common name is the user, its organizations the groups. In the
// tokenreview mode any such identity is admitted, in the kubernetes mode
// it is authorized per sandbox like a token's (SubjectAccessReview), so a
// team grants certificate users with the same RBAC. A bearer token or a
// session cookie on the same request takes precedence: the certificate
// may only say which gateway or machine connected.

// authenticatedGroup is the group Kubernetes adds to every authenticated
// user; RBAC bindings to it must hold for certificate users too.
const authenticatedGroup = "system:authenticated"

// verifiedClientCert is the request's client certificate when the TLS
// handshake verified it, else nil. Only verified chains count: a
// certificate that was merely presented proves nothing.
func verifiedClientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// certificateIdentity reads the identity a verified certificate names;
// false when it names none (no common name), which Kubernetes refuses
// too.
func certificateIdentity(cert *x509.Certificate) (Identity, bool) {
	user := cert.Subject.CommonName
	if user == "" {
		return Identity{}, false
	}
	groups := slices.Clone(cert.Subject.Organization)
	if !slices.Contains(groups, authenticatedGroup) {
		groups = append(groups, authenticatedGroup)
	}
	id := Identity{User: user, Groups: groups}
	id.digest = identityDigest(id)
	return id, true
}

// checkCertificate admits a request by its verified client certificate.
// Browsers send certificates on their own, like cookies, so the same
// Origin rule holds.
func (c *Checker) checkCertificate(ctx context.Context, r *http.Request, cert *x509.Certificate, sandbox resolver.Key) (Caller, error) {
	id, ok := certificateIdentity(cert)
	if !ok {
		return Caller{}, errInvalidCredentials
	}
	if !c.sameOriginOrAllowed(r) {
		return Caller{}, errCrossOrigin
	}
	if c.access != nil {
		if err := c.authorize(ctx, id, sandbox); err != nil {
			return Caller{}, err
		}
	}
	return Caller{User: id.User, Groups: id.Groups, Auth: AuthClientCertificate}, nil
}
