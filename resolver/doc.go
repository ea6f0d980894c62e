// Package resolver defines what the rest of sandbox-router knows about a
// sandbox: the key that names it, the state it is in and the pod address
// that serves it.
//
// It owns the vocabulary (Key, State, Result, Lifecycle, Feed) shared by
// the data plane and the activator (and, once it exists, an xDS server),
// and the implementations that answer lookups (the static, file-backed
// one in resolver/static; the informer-backed one for a real cluster in
// resolver/kube). It must not know anything about HTTP: callers turn a
// Result into a dial address or an error page themselves.
package resolver
