// Package deploy tests the Kubernetes manifests under deploy/: every YAML
// document parses, every kustomization references files and patch targets
// that exist and renders to the objects it promises, and on a real API
// server (e2e/cluster) every rendered kustomization applies and the RBAC
// grants the router's identity exactly the reads the informer-backed
// resolver needs, cluster-wide or per namespace. It has no code of its own
// and must not depend on any router package.
package deploy
