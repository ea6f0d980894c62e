// Package cluster starts a real etcd and a real kube-apiserver on loopback
// for end-to-end tests and the local demo. New(ctx, Options) builds both
// from source through the separate e2e/tools module (cached in
// e2e/tools/bin, rebuilt when the tools module's go.mod or go.sum is
// newer), runs each under the work directory on free 127.0.0.1 ports,
// waits for /readyz, and writes an admin kubeconfig; Start(t) is the same
// for tests (skipped with -short, closed by t.Cleanup, process output
// printed when the test failed).
//
// KubectlBinary and HelmBinary build, on demand and cached beside them, a
// real kubectl (k8s.io/kubernetes cmd/kubectl from the same tools module,
// the API server's version) and the real helm CLI (helm.sh/helm/v4
// cmd/helm from e2e/tools/helm, a module of its own so that helm's
// dependency versions are its own), for the tests of deploy/ (kubectl
// apply -k, helm lint, template and install) against the cluster's
// kubeconfig. BuildAll (go run ./e2e/cluster/buildtools) builds every tool
// ahead of the tests.
//
// Identities: the static token file holds "admin" (system:masters) and
// "router" (no group, so RBAC decides). AdminConfig, RouterConfig and
// WriteKubeconfig hand them to client-go and to the router binary.
// GrantRouter gives "router" what deploy/rbac gives the router's
// ServiceAccount (the ClusterRole, and the leader-election Role in
// RouterNamespace, which it creates) and waits until the grants take
// effect.
// CreateNamespaces, CreateServiceAccount (with ServiceAccountToken, a
// TokenRequest token), Grant and BindRole (a Role and RoleBinding in a
// namespace) make the identities of a test as admin, so that what they
// may do is decided by the real RBAC authorizer; WaitAllowed polls
// SubjectAccessReviews until a new grant has taken effect (a binding does
// a moment after it is written), and ServiceAccountUser and
// ServiceAccountGroups name a ServiceAccount's token in such a review.
// GrantRouter waits for its own grants the same way.
// ApplyCRDs installs deploy/crds and waits until the versions are served;
// ApplyManifests server-side applies any multi-document YAML (RBAC,
// namespaces, CRDs, custom objects) through discovery.
//
// The API server keeps an audit log of Sandbox writes (patch, update; not
// status), of creates and deletes of Sandboxes and SandboxClaims, and of
// every Lease request (audit.go has the policy), appended
// to across restarts: AuditEvents and WaitAuditEvents let a test count and
// time the requests the router made (who, what, answer code, when
// received and finished, in microseconds).
//
// It owns the life of the processes it starts and nothing else: every
// process is stopped by its PID (SIGTERM, then SIGKILL after a deadline),
// never by name, and dies with its parent (Pdeathsig). There is no kubelet,
// scheduler, controller-manager or garbage collector; e2e/sim plays the
// sandbox controller and the kubelet. It must not depend on any router
// package.
package cluster
