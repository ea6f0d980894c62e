package access

import (
	"net/http"
	"strings"
)

// bearerToken reads the credential of an Authorization header of the
// Bearer scheme (RFC 6750; the scheme is case-insensitive). present is
// false when the request carries no Authorization header at all; a header
// that is not one well-formed bearer credential gives present true and an
// empty token, which is refused as invalid rather than ignored.
func bearerToken(h http.Header) (token string, present bool) {
	vs := h["Authorization"]
	if len(vs) == 0 {
		return "", false
	}
	if len(vs) > 1 {
		return "", true // which one would the client mean?
	}
	scheme, cred, ok := strings.Cut(vs[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	cred = strings.TrimLeft(cred, " ")
	if cred == "" || len(cred) > maxTokenBytes || strings.ContainsAny(cred, " \t") {
		return "", true
	}
	return cred, true
}

// maxTokenBytes bounds a bearer token: a Kubernetes token is about 1 KiB;
// anything far beyond is not one, and is not worth a review.
const maxTokenBytes = 16 << 10
