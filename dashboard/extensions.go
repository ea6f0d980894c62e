package dashboard

import "time"

// Extensions is the catalog of the agent-sandbox extensions API
// (extensions.agents.x-k8s.io) as the dashboard reads it: templates, warm
// pools and claims, and which of those kinds are read at all.
// dashboard/kube's Catalog satisfies it; the binary wires it in
// (Options.Extensions).
type Extensions interface {
	// Templates, WarmPools and Claims list the records of namespace (""
	// for all), sorted by namespace and name. The slices inside the
	// records are shared: read them, do not modify them.
	Templates(namespace string) []Template
	WarmPools(namespace string) []WarmPool
	Claims(namespace string) []Claim
	// Changes signals, coalesced, that something above changed. The
	// dashboard is its one reader.
	Changes() <-chan struct{}
	// Kinds reports, per kind, whether it is served, synced or failing.
	Kinds() []KindStatus
}

// Kind names a kind of the extensions API.
type Kind string

// The kinds of the extensions API, in the order Kinds reports them.
const (
	KindTemplate Kind = "SandboxTemplate"
	KindWarmPool Kind = "SandboxWarmPool"
	KindClaim    Kind = "SandboxClaim"
)

// KindStatus says whether and how the catalog reads a kind.
type KindStatus struct {
	Kind Kind
	// Resource is the kind's plural resource name ("sandboxclaims").
	Resource string
	// Version is the served version watched ("v1beta1" or "v1alpha1"),
	// empty while the API server serves the kind in neither (its CRD is
	// not installed).
	Version string
	// Synced: served, and every informer of the kind has delivered its
	// initial list.
	Synced bool
	// Error is the last list or watch error of the kind (403 without the
	// RBAC of deploy/rbac/dashboard, for example), empty once a list or
	// watch succeeds again.
	Error string
}

// Served reports whether the API server serves the kind.
func (s KindStatus) Served() bool { return s.Version != "" }

// Template is a SandboxTemplate: the pod each sandbox made from it runs.
type Template struct {
	Namespace, Name string
	Created         time.Time
	// Containers of spec.podTemplate.spec, in order (the catalog keeps a
	// bounded number).
	Containers []Container
}

// Container is one container of a template's pod.
type Container struct {
	Name, Image string
	// Ports of the container (a bounded number).
	Ports []Port
}

// Port is a declared container port.
type Port struct {
	Name     string
	Number   int32  // containerPort
	Protocol string // TCP (the default), UDP or SCTP
}

// WarmPool is a SandboxWarmPool: a number of pre-started sandboxes of a
// template, handed out to claims.
type WarmPool struct {
	Namespace, Name string
	// Template is spec.sandboxTemplateRef.name.
	Template string
	// Desired is spec.replicas (1, the API's default, when unset).
	Desired int32
	// Replicas is status.replicas: the sandboxes the pool has (claimed
	// ones leave it), that is its unclaimed ones.
	Replicas int32
	// Ready is status.readyReplicas: those of them that are ready.
	Ready   int32
	Created time.Time
}

// Claim is a SandboxClaim: a request for a sandbox, served from a warm
// pool or by a cold start.
type Claim struct {
	Namespace, Name string
	// WarmPool is spec.warmPoolRef.name (v1beta1), or the pool named by
	// a v1alpha1 claim's spec.warmpool policy (empty for "none" and
	// "default").
	WarmPool string
	// Template is a v1alpha1 claim's spec.sandboxTemplateRef.name; for a
	// v1beta1 claim, the template of its warm pool when the catalog knows
	// the pool, else empty.
	Template string
	// Sandbox is status.sandbox.name, the Sandbox made for the claim
	// (empty until there is one).
	Sandbox string
	// Ready is the Ready condition's status True; Reason its reason.
	Ready  bool
	Reason string
	// Expires is spec.lifecycle.shutdownTime; zero when the claim does
	// not expire.
	Expires time.Time
	// Deleting: the claim has a deletion timestamp.
	Deleting bool
	Created  time.Time
}
