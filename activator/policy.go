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
}

// DefaultHoldTimeout is the hold timeout when none is configured.
const DefaultHoldTimeout = 60 * time.Second

func (p *Policy) holdTimeout(lc resolver.Lifecycle) time.Duration {
	if lc.HoldTimeoutSet {
		return lc.HoldTimeout
	}
	return p.HoldTimeout
}

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
