package resolver

import (
	"context"
	"sync"
)

// PendingKeys is the coalescing half of a Feed: the keys added since the
// last Next, each once however often it was added, and a wake-up for the
// one reader. Its memory is bounded by the number of distinct keys. A
// Feed embeds it and adds Close (which is the Feed's own business:
// leaving whatever publishes to it). Make one with NewPendingKeys.
type PendingKeys struct {
	mu      sync.Mutex
	pending map[Key]struct{}
	ready   chan struct{} // capacity 1: "pending is not empty"
}

// NewPendingKeys returns an empty set.
func NewPendingKeys() *PendingKeys {
	return &PendingKeys{pending: make(map[Key]struct{}), ready: make(chan struct{}, 1)}
}

// Add records keys and wakes the reader; it never blocks.
func (p *PendingKeys) Add(keys ...Key) {
	p.mu.Lock()
	for _, k := range keys {
		p.pending[k] = struct{}{}
	}
	p.mu.Unlock()
	select {
	case p.ready <- struct{}{}:
	default:
	}
}

// Next blocks until at least one key is pending, then returns and clears
// them all (in no order); it returns ctx's error when ctx ends first.
func (p *PendingKeys) Next(ctx context.Context) ([]Key, error) {
	for {
		p.mu.Lock()
		if len(p.pending) > 0 {
			keys := make([]Key, 0, len(p.pending))
			for k := range p.pending {
				keys = append(keys, k)
			}
			clear(p.pending)
			p.mu.Unlock()
			return keys, nil
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-p.ready:
		}
	}
}
