package dashboard

import "context"

// relayExtensions turns the extensions catalog's change signals into an
// "extensions" event on every open stream until ctx ends or the returned
// stop is called (which waits for it). The event carries nothing, so it
// tells a viewer nothing it may not see: the page refetches its list,
// which the viewer filters. The stream's own UpdateInterval coalesces
// the signals per client, so a storm costs one refetch per interval.
func (h *Handler) relayExtensions(ctx context.Context) (stop func()) {
	if h.ext == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	changes := h.ext.Changes()
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-changes:
				h.pools.reset() // the next overview reads the change
				h.hub.extensionsChanged()
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// extensionsChanged marks every client as due an "extensions" event: one
// flag each, however many changes, so memory stays bounded.
func (h *hub) extensionsChanged() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		c.mu.Lock()
		c.extensions = true
		c.mu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// takeExtensions reports and clears the client's flag.
func (c *client) takeExtensions() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	was := c.extensions
	c.extensions = false
	return was
}
