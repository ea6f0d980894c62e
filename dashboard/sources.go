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

// SandboxDetails is optional on Sandboxes (resolver/kube's Resolver has
// it): what a sandbox's object says beyond routing, from the resolver's
// cache. Without it the table has no label filter, pod or age, and the
// one-sandbox view no labels, conditions or ports.
type SandboxDetails interface {
	Details(key resolver.Key) (resolver.Details, bool)
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

// RequestCounts is an optional method of an Activity: it visits each
// sandbox's count of requests begun on this replica (activator.View has
// it). A count may restart at zero (the activator forgets sandboxes idle
// for long). With it the overview shows the busiest sandboxes.
type RequestCounts interface {
	Requests(visit func(key resolver.Key, total uint64))
}

// EventLog is an optional method of an Activity: it visits a sandbox's
// recent events on this replica, newest first (activator.View has it).
// count is how many times in a row the same thing happened, at the
// latest. With it the one-sandbox view lists them.
type EventLog interface {
	VisitEvents(key resolver.Key, visit func(at time.Time, kind, text string, count int))
}

// Viewer is who is looking, as far as the dashboard cares. Options.Viewer
// builds one per request. Its answers mirror Kubernetes RBAC: list on a
// resource in a namespace shows every object of that kind there; get on
// one sandbox shows that sandbox's own page and nothing else.
type Viewer interface {
	// MayList reports whether the viewer may see the objects of resource
	// in namespace; namespace "" asks about every namespace at once (a
	// cluster-wide binding), which is asked first. It is asked once per resource and namespace per answer
	// (and per event message), so implementations backed by reviews must
	// cache.
	MayList(ctx context.Context, resource Resource, namespace string) bool
	// MayGet reports whether the viewer may see one sandbox (asked for
	// its own page only, when MayList said no).
	MayGet(ctx context.Context, namespace, name string) bool
}

// Resource is a kind of object the dashboard shows, named as the API
// server's resource (plural) is.
type Resource string

// The resources a Viewer is asked about. Unclaimed warm-pool pods count
// as sandboxes: they are what a claim turns into one.
const (
	ResourceSandboxes Resource = "sandboxes"        // agents.x-k8s.io
	ResourceTemplates Resource = "sandboxtemplates" // extensions.agents.x-k8s.io
	ResourceWarmPools Resource = "sandboxwarmpools" // extensions.agents.x-k8s.io
	ResourceClaims    Resource = "sandboxclaims"    // extensions.agents.x-k8s.io
)

// ErrForbidden, wrapped by an error of Options.Viewer, answers 403 (the
// viewer is known but may not use the dashboard); any other error answers
// 401 (sign in).
var ErrForbidden = errors.New("dashboard: forbidden")

// visibility memoizes a viewer's answers for one answer or message: a
// table of 10,000 rows in 50 namespaces asks the viewer 50 times.
type visibility struct {
	ctx    context.Context
	viewer Viewer // nil: everything is visible
	memo   map[visibilityKey]bool
}

type visibilityKey struct {
	resource  Resource
	namespace string
}

func newVisibility(ctx context.Context, v Viewer) *visibility {
	return &visibility{ctx: ctx, viewer: v}
}

func (v *visibility) all() bool { return v.viewer == nil }

// may reports whether the viewer may list the sandboxes of namespace.
func (v *visibility) may(namespace string) bool { return v.mayList(ResourceSandboxes, namespace) }

func (v *visibility) mayList(resource Resource, namespace string) bool {
	if v.viewer == nil {
		return true
	}
	// One question covers every namespace of a viewer who may list them
	// all (a cluster-wide binding): asked first, once per answer.
	if namespace != "" && v.mayList(resource, "") {
		return true
	}
	k := visibilityKey{resource, namespace}
	if ok, seen := v.memo[k]; seen {
		return ok
	}
	if v.memo == nil {
		v.memo = make(map[visibilityKey]bool)
	}
	ok := v.viewer.MayList(v.ctx, resource, namespace)
	v.memo[k] = ok
	return ok
}

// clusterWide reports whether the viewer may list the sandboxes of every
// namespace: what the replica-wide figures (the last hour) need.
func (v *visibility) clusterWide() bool { return v.mayList(ResourceSandboxes, "") }

// mayGet reports whether the viewer may see one sandbox: by listing its
// namespace or by getting it by name.
func (v *visibility) mayGet(namespace, name string) bool {
	return v.may(namespace) || v.viewer.MayGet(v.ctx, namespace, name)
}
