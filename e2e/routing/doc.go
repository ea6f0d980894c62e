// Package routing holds the end-to-end tests of the informer-backed
// resolver: the real router binary, running as its own process with a
// non-admin identity bound to the RBAC in deploy/rbac, routes to sandboxes
// that the simulated controller runs against a real kube-apiserver.
package routing
