// Package deploy tests the Kubernetes manifests under deploy/: the
// kustomize base and overlays, and the Helm chart (deploy/helm).
//
// Without an API server: every YAML document parses, every kustomization
// references files and patch targets that exist and renders to the objects
// it promises; the real kustomize (kubectl kustomize) renders what the
// tests' own renderer does; helm lint --strict and helm template pass for
// the defaults and every documented variant (the chart's ci/ values
// files), values.schema.json refuses bad values, and values.yaml, the
// schema and the chart's README name the same values; each variant mounts
// the service-account token only when the router uses the API, grants
// exactly the access it needs, runs a hardened pod, and passes the router
// binary's own configuration checks; the chart renders the objects of the
// kustomize base and overlays for the matching values (Helm's labels
// aside).
//
// On one real API server for the package (e2e/cluster), with a real
// kubectl and helm built from source (e2e/tools, cached in e2e/tools/bin):
// every kustomization applies with kubectl apply -k (server-side, a dry run
// first); every chart variant applies through kubectl's server-side dry
// run and installs with helm install; and the router's identities (the
// test cluster's user, the kustomize ServiceAccount, each release's
// ServiceAccount) are granted exactly what they need, asked of the API
// server with SubjectAccessReviews and shown with real requests: the
// resolver's reads and the activator's merge patches of sandboxes,
// cluster-wide or per namespace, the leader-election Lease in the router's
// own namespace, the token and access reviews of the authz modes that
// make them, and the dashboard's reads of the extensions API
// (SandboxTemplates, SandboxWarmPools, SandboxClaims) where it is on.
//
// The dashboard (dashboard_test.go): overlays/dashboard and the chart's
// dashboard.* values render its flags, port, Service, NetworkPolicy rule,
// Ingress and RBAC; the chart refuses it under allow-all without
// dashboard.anonymous, as the router does; the release notes say how to
// reach it and sign in.
//
// It has no code of its own and must not depend on any router package; it
// runs the router binary (e2e/routerproc) only to check rendered arguments.
package deploy
