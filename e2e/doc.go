// Package e2e holds the end-to-end harness of sandbox-router: the local
// demo (e2e/demo) today, and the real etcd + kube-apiserver harness with a
// simulated sandbox controller as the resolver work lands. Nothing here is
// linked into the router binary.
package e2e
