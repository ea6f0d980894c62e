// Package access holds the end-to-end tests of access control: the router
// binary, as the non-admin user "router" (cluster.GrantRouter, with
// deploy/rbac/access), in front of simulated sandboxes on a real etcd and
// kube-apiserver, one cluster for the package. The identities are
// ServiceAccounts with tokens from the TokenRequest API; what they may
// reach is ordinary RBAC (create on sandboxes/proxy, per namespace and per
// name); the API server's audit log counts the router's TokenReviews and
// SubjectAccessReviews.
package access
