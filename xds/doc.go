// Package xds publishes the resolver's view of sandboxes over xDS, built
// on go-control-plane, to two kinds of client:
//
//   - Envoy fleets, on demand: one Listener and one RouteConfiguration
//     with VHDS; Envoy's on_demand filter asks for the virtual host of each
//     host it sees, and gets a route straight to the pod of a running
//     sandbox (through a shared ORIGINAL_DST cluster) or to the router
//     fleet for anything else, whose activator holds and resumes.
//   - proxyless gRPC clients (grpc-go's xds resolver): for each sandbox
//     host a Listener, a Cluster and its endpoints, the pod's address or
//     the router fleet's.
//
// Virtual hosts and the proxyless view are served by a cache of its own
// (onDemand) that builds a resource only when a client names it, indexes
// which streams hold which names, and on a resolver change touches only
// those. The handful of fixed Envoy resources go through go-control-plane's
// SnapshotCache behind a MuxCache.
//
// It owns the translation from resolver state to xDS resources and the
// protocol bookkeeping (subscriptions, NACKs, cold names). It must not
// proxy traffic, decide who may reach a sandbox, or talk to Kubernetes
// itself: the resolver, a router-endpoints source and a tls.Config are
// handed to it.
package xds
