package dashboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"

	"github.com/sandbox-router/sandbox-router/access"
)

// AccessAuth signs viewers in with the router's access Checker: a token
// is authenticated as a request to a sandbox would be (TokenReview,
// cached; or a scoped token), and what its viewer sees is what RBAC lets
// it list or get (Checker.MayView: SubjectAccessReviews of list and get,
// cached). Under tokenreview every signed-in viewer sees everything; a
// scoped token sees its one sandbox's page. A Checker in allow-all mode
// knows no identities: nobody could sign in, so it is refused here.
func AccessAuth(c *access.Checker, log *slog.Logger) (Authenticator, error) {
	if modes := c.Modes(); len(modes) == 0 || slices.Equal(modes, []access.Mode{access.ModeAllowAll}) {
		return nil, errors.New("dashboard: sign-in needs an access mode that knows identities (tokenreview, kubernetes or scoped-token), not allow-all")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &accessAuth{c: c, log: log}, nil
}

type accessAuth struct {
	c   *access.Checker
	log *slog.Logger
}

// groups are the API groups of the resources a Viewer is asked about.
var groups = map[Resource]string{
	ResourceSandboxes: "agents.x-k8s.io",
	ResourceTemplates: "extensions.agents.x-k8s.io",
	ResourceWarmPools: "extensions.agents.x-k8s.io",
	ResourceClaims:    "extensions.agents.x-k8s.io",
}

// Viewer implements Authenticator, mapping the access layer's refusals
// to the dashboard's: 403, 429 and 503 keep their meaning, anything else
// is "sign in" (401).
func (a *accessAuth) Viewer(ctx context.Context, token string, client netip.Addr) (Viewer, error) {
	p, err := a.c.Authenticate(ctx, token, client)
	if err != nil {
		return nil, accessRefusal(err)
	}
	return &accessViewer{c: a.c, p: p, log: a.log}, nil
}

func accessRefusal(err error) error {
	var st interface{ HTTPStatus() int }
	if !errors.As(err, &st) {
		return err // the client left
	}
	switch st.HTTPStatus() {
	case http.StatusForbidden:
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	case http.StatusTooManyRequests:
		return fmt.Errorf("%w: %w", ErrRateLimited, err)
	case http.StatusServiceUnavailable:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// accessViewer is one signed-in principal. Its answers come from the
// Checker's caches; an error (the API server away with nothing cached)
// hides what it was about rather than showing it.
type accessViewer struct {
	c   *access.Checker
	p   access.Principal
	log *slog.Logger
}

func (v *accessViewer) UserName() string { return v.p.User }

func (v *accessViewer) MayList(ctx context.Context, resource Resource, namespace string) bool {
	group, ok := groups[resource]
	if !ok {
		return false
	}
	return v.may(ctx, access.ViewQuery{Verb: access.ViewList, Group: group, Resource: string(resource), Namespace: namespace})
}

func (v *accessViewer) MayGet(ctx context.Context, namespace, name string) bool {
	return v.may(ctx, access.ViewQuery{Verb: access.ViewGet, Group: groups[ResourceSandboxes], Resource: string(ResourceSandboxes),
		Namespace: namespace, Name: name})
}

func (v *accessViewer) may(ctx context.Context, q access.ViewQuery) bool {
	ok, err := v.c.MayView(ctx, v.p, q)
	if err != nil && ctx.Err() == nil {
		v.log.Warn("dashboard: view not checked; hidden", "user", v.p.User, "verb", q.Verb, "resource", q.Resource, "namespace", q.Namespace, "err", err)
	}
	return ok && err == nil
}
