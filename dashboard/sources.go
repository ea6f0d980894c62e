package dashboard

import (
	"context"
	"errors"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Sandboxes is the resolver as the dashboard reads it (resolver/kube's
// Resolver satisfies it).
type Sandboxes interface {
	// Snapshot is every sandbox and unclaimed warm-pool pod known. A
	// warm-pool pod carries the pod's name and UID, which is how it is told
	// apart: looking its name up does not find it.
	Snapshot() []resolver.Result
	Lookup(key resolver.Key) resolver.Result
	// Subscribe is the coalesced feed of changed keys: names for
	// sandboxes, UIDs for warm-pool pods.
	Subscribe() resolver.Feed
	// Lifecycle is the sandbox's suspend/resume policy and last recorded
	// activity; false for warm-pool pods and unknown sandboxes.
	Lifecycle(key resolver.Key) (resolver.Lifecycle, bool)
}

// Activity is what only the activator knows. It is optional: without it
// the dashboard shows no held or open requests, and idle timeouts only
// where a sandbox's annotation sets one.
//
// None of it changes the resolver's feed, so the live stream carries it
// only alongside state changes; the pages show it as of their last answer.
type Activity interface {
	// State is the sandbox's requests in flight on this replica and its
	// last activity here (zero if none is known): activator.Tracker.State.
	State(key resolver.Key) (inFlight int64, last time.Time)
	// Held is the number of requests held now, per sandbox being woken
	// (namespace and name keys), on this replica. Only sandboxes being
	// woken appear, so it is small; the caller may keep the map.
	Held() map[resolver.Key]int
	// IdleTimeout is the idle timeout in effect for a sandbox of namespace
	// with lifecycle lc (annotation, namespace default, global default);
	// 0 means it is never suspended for idleness.
	IdleTimeout(namespace string, lc resolver.Lifecycle) time.Duration
}

// Viewer is who is looking, as far as the dashboard cares. Options.Viewer
// builds one per request.
type Viewer interface {
	// MayList reports whether the viewer may see the sandboxes of
	// namespace. It is asked once per namespace per answer (and per event
	// message), so implementations backed by reviews must cache.
	MayList(ctx context.Context, namespace string) bool
}

// ErrForbidden, wrapped by an error of Options.Viewer, answers 403 (the
// viewer is known but may not use the dashboard); any other error answers
// 401 (sign in).
var ErrForbidden = errors.New("dashboard: forbidden")

// visibility memoizes a viewer's answers for one answer or message: a
// table of 10,000 rows in 50 namespaces asks the viewer 50 times.
type visibility struct {
	ctx    context.Context
	viewer Viewer // nil: everything is visible
	memo   map[string]bool
}

func newVisibility(ctx context.Context, v Viewer) *visibility {
	return &visibility{ctx: ctx, viewer: v}
}

func (v *visibility) all() bool { return v.viewer == nil }

func (v *visibility) may(namespace string) bool {
	if v.viewer == nil {
		return true
	}
	if ok, seen := v.memo[namespace]; seen {
		return ok
	}
	if v.memo == nil {
		v.memo = make(map[string]bool)
	}
	ok := v.viewer.MayList(v.ctx, namespace)
	v.memo[namespace] = ok
	return ok
}
