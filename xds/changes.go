package xds

import (
	"context"
	"net/netip"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// run follows the resolver's feed until ctx ends.
func (c *onDemand) run(ctx context.Context, feed resolver.Feed) error {
	defer feed.Close()
	for {
		keys, err := feed.Next(ctx)
		if err != nil {
			return err
		}
		c.changed(keys, c.now())
	}
}

// changed rebuilds the entries of changed sandboxes and pushes them to
// the streams that hold them.
func (c *onDemand) changed(keys []resolver.Key, seen time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if k.Name == "" {
			continue // a warm-pool pod: no host names it
		}
		for _, e := range c.byKey[resolver.Key{Namespace: k.Namespace, Name: k.Name}] {
			if c.build(e, seen) {
				c.markDirty(e)
			}
		}
	}
}

// setRouters replaces the router fleet's endpoints.
func (c *onDemand) setRouters(addrs []netip.AddrPort) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.routers = routerSet{addrs: addrs, version: routersVersion(addrs)}
	seen := c.now()
	for _, k := range c.kinds {
		if !k.routers {
			continue
		}
		for _, e := range c.entries[k.typeURL] {
			if c.build(e, seen) {
				c.markDirty(e)
			}
		}
	}
}

func (c *onDemand) markDirty(e *entry) {
	for _, s := range e.subs {
		s.dirty[e] = struct{}{}
		if s.watch != nil {
			c.respond(s)
		}
	}
}

// sweepCold tells clients to drop names they have not asked for since
// cutoff (for kinds fetched on demand: a client asks again when it needs
// one), which bounds the working set of every Envoy.
func (c *onDemand) sweepCold(cutoff time.Time, forgetNodesBefore time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := cutoff.UnixNano()
	for _, st := range c.streams {
		if !st.delta {
			continue
		}
		for _, s := range st.types {
			if !s.kind.aliased {
				continue
			}
			n := 0
			for name, h := range s.names {
				if h.since < limit {
					c.unsubscribe(s, name)
					s.removals = append(s.removals, name)
					n++
				}
			}
			if n > 0 {
				c.metrics.coldRemovals.Add(float64(n))
				if s.watch != nil {
					c.respond(s)
				}
			}
		}
	}
	for id, nm := range c.nodes {
		if nm.streams == 0 && nm.lastSeen.Before(forgetNodesBefore) {
			delete(c.nodes, id)
		}
	}
}
