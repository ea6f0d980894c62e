package activator

import (
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Policy says how long requests are held and how long a sandbox may sit
// idle. A sandbox's annotations win over the namespace default, which wins
// over the global one.
type Policy struct {
	// HoldTimeout bounds how long a request waits for its sandbox to
	// resume (default 60s); the request's own deadline still applies.
	HoldTimeout time.Duration
	// IdleTimeout is the global idle timeout; 0 means never suspend.
	IdleTimeout time.Duration
	// NamespaceIdleTimeouts override IdleTimeout per namespace (0: never).
	NamespaceIdleTimeouts map[string]time.Duration
	// Release says when requests held for a starting sandbox go to its
	// new pod: ReleaseOnProbe (the default) at the router's first
	// successful probe of the pod, ReleaseOnReady once Kubernetes calls
	// it Ready. A sandbox's release-on annotation wins.
	Release resolver.Release
}

// DefaultHoldTimeout is the hold timeout when none is configured.
const DefaultHoldTimeout = 60 * time.Second

func (p *Policy) holdTimeout(lc resolver.Lifecycle) time.Duration {
	if lc.HoldTimeoutSet {
		return lc.HoldTimeout
	}
	return p.HoldTimeout
}

func (p *Policy) release(lc resolver.Lifecycle) resolver.Release {
	switch {
	case lc.Release != resolver.ReleaseDefault:
		return lc.Release
	case p.Release != resolver.ReleaseDefault:
		return p.Release
	}
	return resolver.ReleaseOnProbe
}

// The names of what released a wake-up's requests, in metrics and logs.
const (
	releaseOnProbe = "probe"
	releaseOnReady = "ready"
)

// releaseSignal says what each release name means, for events people read.
var releaseSignal = map[string]string{
	releaseOnProbe: "the router's probe of the new pod",
	releaseOnReady: "the pod's Ready condition",
}

// idleTimeout is the idle timeout in effect for a sandbox of namespace
// with lifecycle lc: its annotation, else the namespace default, else the
// global one; 0 means it is never suspended for idleness.
func (p *Policy) idleTimeout(namespace string, lc resolver.Lifecycle) time.Duration {
	if lc.IdleTimeoutSet {
		return lc.IdleTimeout
	}
	if d, ok := p.NamespaceIdleTimeouts[namespace]; ok {
		return d
	}
	return p.IdleTimeout
}

// reportInterval is how stale a sandbox's last-activity annotation may get
// while it is active: a quarter of its idle timeout, so that the elected
// replica learns of activity on the others well inside the timeout, within
// bounds that keep API writes rare for long timeouts and sane for short
// ones. docs/activator.md derives the write rate from it.
func reportInterval(idle time.Duration) time.Duration {
	return min(max(idle/4, time.Second), 5*time.Minute)
}
