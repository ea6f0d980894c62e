package access

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/access/scoped"
)

// withCert gives r a verified client certificate naming user and groups,
// as the HTTPS listener hands it on after the handshake.
func withCert(r *http.Request, user string, groups ...string) *http.Request {
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: user, Organization: groups}}
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
	return r
}

func TestClientCertificates(t *testing.T) {
	f := newAuthority()
	f.grants["carol"] = []string{"team-a/sb1"}
	newChecker := func(modes ...Mode) *Checker {
		c, err := New(Options{Modes: modes, Tokens: f, Access: f, Scoped: refuseScoped{}, Sandboxes: uids{},
			Metrics: NewMetrics(prometheus.NewRegistry())})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	kube, review, scopedOnly := newChecker(ModeKubernetes), newChecker(ModeTokenReview), newChecker(ModeScopedToken)
	req := func(method string, mod func(*http.Request)) *http.Request {
		r, _ := http.NewRequest(method, "https://router.example/api", nil)
		if mod != nil {
			mod(r)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		c    *Checker
		r    *http.Request
		sb   string
		want string
	}{
		{"granted user", kube, withCert(req("GET", nil), "carol", "dev"), "a", "allowed"},
		{"user without a grant", kube, withCert(req("GET", nil), "mallory"), "a", CodeForbidden},
		{"granted user, another sandbox", kube, withCert(req("GET", nil), "carol"), "b", CodeForbidden},
		{"no common name", kube, withCert(req("GET", nil), ""), "a", CodeInvalidCredentials},
		{"tokenreview admits any verified user", review, withCert(req("GET", nil), "mallory"), "b", "allowed"},
		{"scoped-token alone does not take certificates", scopedOnly, withCert(req("GET", nil), "carol"), "a", CodeMissingCredentials},
		{"a bearer token wins", kube, withCert(req("GET", func(r *http.Request) { r.Header.Set("Authorization", "Bearer bob-token") }), "carol"), "a", CodeForbidden},
		{"presented but not verified", kube, req("GET", func(r *http.Request) {
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "carol"}}}}
		}), "a", CodeMissingCredentials},
		{"cross-origin POST", kube, withCert(req("POST", func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }), "carol"), "a", CodeCrossOrigin},
		{"same-origin POST", kube, withCert(req("POST", func(r *http.Request) { r.Header.Set("Origin", "https://router.example") }), "carol"), "a", "allowed"},
	} {
		sb := sbA
		if tc.sb == "b" {
			sb = sbB
		}
		_, err := tc.c.Check(context.Background(), tc.r, sb, 8888, "")
		if got := code(err); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	// The SubjectAccessReview sees the user and groups as Kubernetes
	// would read the certificate, system:authenticated included.
	id, _ := certificateIdentity(withCert(req("GET", nil), "carol", "dev").TLS.VerifiedChains[0][0])
	if !slices.Equal(id.Groups, []string{"dev", authenticatedGroup}) {
		t.Fatalf("groups %v", id.Groups)
	}
}

// refuseScoped verifies no scoped token.
type refuseScoped struct{}

func (refuseScoped) Verify(string) (scoped.Claims, error) {
	return scoped.Claims{}, errors.New("no keys")
}
