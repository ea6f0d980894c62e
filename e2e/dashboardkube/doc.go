// Package dashboardkube holds the end-to-end test of dashboard/kube, the
// dashboard's catalog of SandboxTemplates, SandboxWarmPools and
// SandboxClaims, on a real etcd and kube-apiserver (e2e/cluster) with the
// extension CRDs of deploy/crds and the RBAC of deploy/rbac/dashboard:
// a catalog started before the CRDs exist reports the kinds absent and
// picks them up once applied; objects created, changed and deleted by
// the admin show in the catalog; a catalog limited to some namespaces,
// running as the unprivileged user "router" with RoleBindings there only,
// sees those and nothing else; one without any grant reports the
// Forbidden error until a binding arrives; a deleted CRD drops its kind,
// and a re-applied one brings it back.
package dashboardkube
