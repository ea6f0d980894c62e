package main

import (
	"fmt"
	"log/slog"

	"github.com/sandbox-router/sandbox-router/router"
)

// connectionCaps are the router's caps on what costs it a descriptor.
type connectionCaps struct {
	client, tunnels, upstream int
}

// maxBudget bounds a descriptor limit taken as "unlimited".
const maxBudget = 1 << 30

// deriveCaps fits the caps under the soft descriptor limit: the reserve
// first (admin listener, API server, files), then client connections and
// connections to sandboxes, half each unless set. A tunnel holds one of
// each. Caps the limit cannot hold are a configuration error, found at
// start rather than as descriptor exhaustion under load. soft 0 (no
// RLIMIT_NOFILE) leaves unset caps off.
func deriveCaps(cfg *config, soft uint64) (connectionCaps, error) {
	c := connectionCaps{client: cfg.MaxClientConns, tunnels: cfg.MaxTunnels, upstream: cfg.MaxUpstreamConns}
	if soft == 0 {
		if c.tunnels == 0 {
			c.tunnels = c.client
		}
		return c, nil
	}
	budget := int(min(soft, maxBudget)) - cfg.DescriptorReserve
	if budget < 2 {
		return c, fmt.Errorf("the descriptor limit (%d) leaves nothing beyond descriptor-reserve (%d): raise the limit (ulimit -n) or lower the reserve", soft, cfg.DescriptorReserve)
	}
	switch {
	case c.client == 0 && c.upstream == 0:
		c.client = budget / 2
		c.upstream = budget - c.client
	case c.client == 0:
		c.client = budget - c.upstream
	case c.upstream == 0:
		c.upstream = budget - c.client
	}
	if c.client < 1 || c.upstream < 1 || c.client+c.upstream > budget {
		return c, fmt.Errorf("max-client-connections (%d) and max-upstream-connections (%d) need %d descriptors, and the limit (%d) less descriptor-reserve (%d) leaves %d: lower them or raise the limit (ulimit -n)",
			c.client, c.upstream, c.client+c.upstream, soft, cfg.DescriptorReserve, budget)
	}
	if c.tunnels == 0 {
		c.tunnels = c.client
	}
	if c.tunnels > c.client {
		return c, fmt.Errorf("max-tunnels (%d) is above max-client-connections (%d): a tunnel is a client connection", c.tunnels, c.client)
	}
	return c, nil
}

// connectionBudget raises the descriptor limit, reports it, and derives
// the caps from it.
func connectionBudget(cfg *config, metrics *router.Metrics, log *slog.Logger) (connectionCaps, error) {
	soft, hard, err := router.RaiseDescriptorLimit()
	if err != nil {
		log.Warn("descriptor limit unknown: connection caps only as configured", "err", err)
		soft = 0
	} else {
		metrics.SetDescriptorLimits(soft, hard)
	}
	caps, err := deriveCaps(cfg, soft)
	if err != nil {
		return caps, err
	}
	log.Info("connection budget", "descriptor_limit_soft", soft, "descriptor_limit_hard", hard,
		"reserve", cfg.DescriptorReserve, "max_client_connections", caps.client,
		"max_tunnels", caps.tunnels, "max_upstream_connections", caps.upstream)
	return caps, nil
}
