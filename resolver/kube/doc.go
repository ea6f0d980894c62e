// Package kube is the informer-backed resolver: the router's view of the
// cluster's Sandbox objects (agents.x-k8s.io, v1beta1 and v1alpha1) and of
// their pods.
//
// It owns six things, each in its own file:
//   - transform.go: informer transforms that turn a decoded Sandbox or Pod
//     into a small record (records.go) holding only what routing needs, so
//     the cache grows by a small constant per sandbox however big the pod
//     spec is;
//   - state.go: how a sandbox's records (one per API version watched, and
//     its pods) combine into one resolver.Result;
//   - index.go: the in-memory indexes by namespace/name and by UID, answered
//     under a read lock without allocating;
//   - notify.go: per-sandbox change notifications (one channel per watched
//     sandbox, shared by all its waiters) and coalesced feeds of every
//     change, with no goroutine per sandbox and no polling;
//   - lifecycle.go: what the activator reads besides the routing answer,
//     the suspend/resume policy of a sandbox's annotations (Lifecycle) and
//     the spec fields that suspend it (SpecOf);
//   - details.go: what views read beyond routing (Details: creation time,
//     labels, conditions, pod-template ports, the serving pod), bounded
//     and interned per distinct value, never read on the request path.
//
// metrics.go counts what they do. informers.go wires them to client-go: discovery picks the served Sandbox
// versions, and one Sandbox informer per version plus one Pod informer
// (server-side label selector on agents.x-k8s.io/sandbox-name-hash) run per
// watched namespace, or cluster-wide.
//
// It must not know anything about HTTP, and it never writes to the API
// server: suspending and resuming belong to the activator.
package kube
