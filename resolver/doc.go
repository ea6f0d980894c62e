// Package resolver defines what the rest of sandbox-router knows about a
// sandbox: the key that names it, the state it is in and the pod address
// that serves it.
//
// It owns the vocabulary (Key, State, Result, Lifecycle, Details, Feed)
// shared by the data plane, the activator, the xDS server, the MCP
// endpoint and the dashboard, with PendingKeys, the coalescing set every
// Feed (and every test's fake of one) is built on,
// and the implementations that answer lookups (the static, file-backed
// one in resolver/static; the informer-backed one for a real cluster in
// resolver/kube). It must not know anything about HTTP: callers turn a
// Result into a dial address or an error page themselves.
package resolver
