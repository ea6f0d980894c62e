package kube

import (
	"context"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// The attributes a sandbox's access is checked against: like pods/proxy,
// a "proxy" subresource the Sandbox API does not serve, so a grant of it
// allows reaching the sandbox through the router and nothing else.
const (
	Group       = "agents.x-k8s.io"
	Resource    = "sandboxes"
	Subresource = "proxy"
	Verb        = "create"
)

// TokenReviewer authenticates bearer tokens with TokenReviews.
type TokenReviewer struct {
	client    authenticationclient.TokenReviewInterface
	audiences []string
}

// NewTokenReviewer reviews tokens through client. With audiences, a
// token must be meant for one of them (a projected ServiceAccount token
// requested with --audience, or a TokenRequest's audiences); without, the
// API server's own audiences apply.
func NewTokenReviewer(client authenticationclient.TokenReviewInterface, audiences []string) *TokenReviewer {
	return &TokenReviewer{client: client, audiences: slices.Clone(audiences)}
}

// AuthenticateToken implements access.TokenAuthenticator.
func (t *TokenReviewer) AuthenticateToken(ctx context.Context, token string) (access.Identity, bool, error) {
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: t.audiences}}
	res, err := t.client.Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return access.Identity{}, false, err
	}
	st := res.Status
	if !st.Authenticated {
		return access.Identity{}, false, nil
	}
	if len(t.audiences) > 0 && !intersects(st.Audiences, t.audiences) {
		// An authenticator that ignores audiences answers without them.
		return access.Identity{}, false, nil
	}
	id := access.Identity{User: st.User.Username, UID: st.User.UID, Groups: slices.Clone(st.User.Groups)}
	if len(st.User.Extra) > 0 {
		id.Extra = make(map[string][]string, len(st.User.Extra))
		for k, v := range st.User.Extra {
			id.Extra[k] = slices.Clone([]string(v))
		}
	}
	return id, true, nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// AccessReviewer authorizes identities with SubjectAccessReviews: per
// sandbox for the data plane, and list or get for read-only views.
type AccessReviewer struct {
	client authorizationclient.SubjectAccessReviewInterface
}

// NewAccessReviewer reviews access through client.
func NewAccessReviewer(client authorizationclient.SubjectAccessReviewInterface) *AccessReviewer {
	return &AccessReviewer{client: client}
}

// MayReach implements access.SandboxAuthorizer.
func (a *AccessReviewer) MayReach(ctx context.Context, id access.Identity, sandbox resolver.Key) (bool, error) {
	return a.review(ctx, id, authorizationv1.ResourceAttributes{
		Namespace:   sandbox.Namespace,
		Verb:        Verb,
		Group:       Group,
		Resource:    Resource,
		Subresource: Subresource,
		Name:        sandbox.Name,
	})
}

// MayView implements access.ViewAuthorizer: the query's verb (list or
// get) on its resource, no subresource, as a kubectl get of the
// identity's own would be judged.
func (a *AccessReviewer) MayView(ctx context.Context, id access.Identity, q access.ViewQuery) (bool, error) {
	return a.review(ctx, id, authorizationv1.ResourceAttributes{
		Namespace: q.Namespace,
		Verb:      q.Verb,
		Group:     q.Group,
		Resource:  q.Resource,
		Name:      q.Name,
	})
}

// review asks whether id may do what attrs say.
func (a *AccessReviewer) review(ctx context.Context, id access.Identity, attrs authorizationv1.ResourceAttributes) (bool, error) {
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               id.User,
		UID:                id.UID,
		Groups:             id.Groups,
		ResourceAttributes: &attrs,
	}}
	if len(id.Extra) > 0 {
		review.Spec.Extra = make(map[string]authorizationv1.ExtraValue, len(id.Extra))
		for k, v := range id.Extra {
			review.Spec.Extra[k] = v
		}
	}
	res, err := a.client.Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	// Denied, or neither allowed nor denied (no opinion): not allowed. An
	// evaluation error beside a decision does not change it.
	return res.Status.Allowed && !res.Status.Denied, nil
}
