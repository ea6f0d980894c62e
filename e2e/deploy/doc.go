// Package deploy tests the Kubernetes manifests under deploy/: every YAML
// document parses, every kustomization references files and patch targets
// that exist and renders to the objects it promises, and on a real API
// server (e2e/cluster) every rendered kustomization applies and the RBAC
// grants the router's identity exactly what it needs: the informer-backed
// resolver's reads and the activator's merge patches of sandboxes,
// cluster-wide or per namespace, and the leader-election Lease in its own
// namespace. It has no code of its own and must not depend on any router
// package.
package deploy
