// Package kube is the dashboard's catalog of the agent-sandbox extensions
// API (extensions.agents.x-k8s.io): SandboxTemplates, SandboxWarmPools and
// SandboxClaims, read through lean informers, in every namespace or in a
// list of them.
//
// It owns four things, each in its own file:
//   - types.go: the small records the dashboard reads (Template,
//     WarmPool, Claim) and the report of which kinds are served (Kinds);
//   - transform.go: informer transforms that reduce each decoded object to
//     its record, keeping only the few fields shown, with bounded lists,
//     so the cache grows by a small constant per object;
//   - table.go: a per-kind table of records, sorted by namespace and name
//     on demand and cached until the next change;
//   - catalog.go and discovery.go: the wiring to client-go. Discovery
//     picks the served version of each kind (v1beta1, else v1alpha1); an
//     absent kind gets no informer, and discovery is tried again with
//     backoff until every kind is served, and at once when a watched kind
//     stops being served (its list answers NotFound). Every change is
//     signalled, coalesced, on one channel.
//
// It never writes to the API server, and it knows nothing of HTTP or of
// the router's own state: the dashboard joins that in.
package kube
