package kube

import "github.com/sandbox-router/sandbox-router/dashboard"

// Group is the agent-sandbox extensions API group.
const Group = "extensions.agents.x-k8s.io"

// The records are the dashboard's own types: the catalog fills them, the
// dashboard reads them through its Extensions interface, which *Catalog
// satisfies (the dashboard must not import this package).
type (
	Kind       = dashboard.Kind
	KindStatus = dashboard.KindStatus
	Template   = dashboard.Template
	Container  = dashboard.Container
	Port       = dashboard.Port
	WarmPool   = dashboard.WarmPool
	Claim      = dashboard.Claim
)

// The kinds, in the order Kinds reports them.
const (
	KindTemplate = dashboard.KindTemplate
	KindWarmPool = dashboard.KindWarmPool
	KindClaim    = dashboard.KindClaim
)

// The catalog is what the dashboard reads the extensions API through.
var _ dashboard.Extensions = (*Catalog)(nil)
