package access

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// ViewQuery asks whether a principal may read objects through the API
// server as RBAC sees it: list a resource in a namespace, or get one
// object of it by name. It is what a read-only view (the dashboard) asks
// before showing something, the data plane's "reach" question's sibling.
type ViewQuery struct {
	Verb      string // ViewList or ViewGet
	Group     string // the API group of Resource
	Resource  string // plural, as RBAC names it
	Namespace string // a DNS label; "" for list asks about every namespace at once
	Name      string // for ViewGet only
}

// The verbs a ViewQuery may ask about.
const (
	ViewList = "list"
	ViewGet  = "get"
)

// viewable is the fixed set of resources a ViewQuery may name, with their
// groups: the Sandbox API's objects and nothing else, so that the views'
// cache and the review budget cannot be spent on arbitrary questions.
var viewable = map[string]string{
	"sandboxes":        "agents.x-k8s.io",
	"sandboxtemplates": "extensions.agents.x-k8s.io",
	"sandboxwarmpools": "extensions.agents.x-k8s.io",
	"sandboxclaims":    "extensions.agents.x-k8s.io",
}

// ErrBadViewQuery is wrapped by MayView's error for a question outside
// the fixed set (another verb or resource, list with a name, get without).
var ErrBadViewQuery = errors.New("access: not a view question")

// ViewAuthorizer tells whether an identity may list or get an object (a
// SubjectAccessReview with the query's attributes and no subresource);
// err is set when it could not answer. access/kube's AccessReviewer
// implements it.
type ViewAuthorizer interface {
	MayView(ctx context.Context, id Identity, q ViewQuery) (allowed bool, err error)
}

// check reports why q is outside the fixed set of view questions; nil
// when it is one. A namespace or name that is no DNS label is no error:
// nothing can be granted on an object that cannot exist (see MayView).
func (q ViewQuery) check() error {
	group, known := viewable[q.Resource]
	switch {
	case !known || group != q.Group:
		return fmt.Errorf("%w: resource %q of group %q", ErrBadViewQuery, q.Resource, q.Group)
	case q.Verb == ViewList && q.Name != "":
		return fmt.Errorf("%w: list names no object", ErrBadViewQuery)
	case q.Verb == ViewGet && q.Name == "":
		return fmt.Errorf("%w: get needs a name", ErrBadViewQuery)
	case q.Verb != ViewList && q.Verb != ViewGet:
		return fmt.Errorf("%w: verb %q", ErrBadViewQuery, q.Verb)
	}
	return nil
}

// MayView tells whether p may list or get what q names, as the API server
// would judge a request of p's own: a SubjectAccessReview, cached as the
// data plane's decisions are (time to live, a shorter one for refusals,
// one review however many ask at once, stale answers while the API server
// is away) but in a memo of its own, so that a dashboard never evicts the
// data plane's answers.
//
//   - a Kubernetes identity under tokenreview (no authorizer): true, since
//     it reaches every sandbox anyway;
//   - a scoped token: only get on its one sandbox (its namespace, name and,
//     for v2, the UID of the instance there now), never list;
//   - allow-all knows no principals: false.
//
// It is false, not an error, for a refusal; the error is ErrBadViewQuery
// for a question outside the fixed set, errUnavailable (an *Error of
// status 503) when the API server cannot answer and nothing is cached, or
// ctx's.
func (c *Checker) MayView(ctx context.Context, p Principal, q ViewQuery) (bool, error) {
	if err := q.check(); err != nil {
		return false, err
	}
	// Namespace "" asks about every namespace at once: only list may.
	if (q.Namespace != "" || q.Verb != ViewList) && !resolver.IsDNSLabel(q.Namespace) || q.Name != "" && !resolver.IsDNSLabel(q.Name) {
		return false, nil
	}
	switch p.Auth {
	case AuthScopedToken:
		if q.Verb != ViewGet || q.Resource != "sandboxes" {
			return false, nil
		}
		return c.Reaches(ctx, p, resolver.Key{Namespace: q.Namespace, Name: q.Name})
	case AuthKubernetesToken:
		if c.access == nil {
			return true, nil // tokenreview
		}
		if c.views == nil {
			return false, nil // New warned: nothing to ask, so nothing is shown
		}
		return c.view(ctx, p.id, q)
	}
	return false, nil
}

// view asks whether id may do q, once per identity, question and time to
// live.
func (c *Checker) view(ctx context.Context, id Identity, q ViewQuery) (bool, error) {
	key := viewKey(id, q)
	_, ok, hit := c.viewMemo.cached(key)
	if hit {
		return ok, nil
	}
	_, ok, err := c.viewMemo.fetch(ctx, key, func(ctx context.Context) (struct{}, bool, error) {
		allowed, err := c.views.MayView(ctx, id, q)
		return struct{}{}, allowed, err
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return false, ctx.Err()
	case err != nil:
		c.log.Warn("access: view not reviewed", "user", id.User, "verb", q.Verb, "resource", q.Resource, "namespace", q.Namespace, "err", err)
		return false, errUnavailable
	}
	return ok, nil
}

// viewKey digests an identity's digest and every field of q, each with
// its length, behind a tag of its own: no view question shares a key with
// another or with a data-plane decision.
func viewKey(id Identity, q ViewQuery) digest {
	h := sha256.New()
	h.Write([]byte("view\x00"))
	h.Write(id.digest[:])
	for _, s := range []string{q.Verb, q.Group, q.Resource, q.Namespace, q.Name} {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var d digest
	h.Sum(d[:0])
	return d
}
