package kube

import (
	"context"
	"sync"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// notifier wakes whoever waits for a sandbox to change, and feeds
// coalesced change sets to subscribers. It holds one channel per sandbox
// that somebody waits on, shared by all its waiters, and nothing for the
// others: memory follows the waiters, not the cluster.
type notifier struct {
	mu      sync.Mutex
	waiters map[resolver.Key]*waiter
	feeds   map[*Feed]struct{}
}

type waiter struct {
	ch   chan struct{}
	refs int
}

func newNotifier() *notifier {
	return &notifier{waiters: make(map[resolver.Key]*waiter), feeds: make(map[*Feed]struct{})}
}

// notifyKey is the key changes are announced under: the name when there
// is one, else the UID (an unclaimed warm-pool pod).
func notifyKey(k resolver.Key) resolver.Key {
	if k.Name != "" {
		return resolver.Key{Namespace: k.Namespace, Name: k.Name}
	}
	return resolver.Key{Namespace: k.Namespace, UID: k.UID}
}

func (n *notifier) wait(k resolver.Key) (<-chan struct{}, func()) {
	k = notifyKey(k)
	n.mu.Lock()
	w := n.waiters[k]
	if w == nil {
		w = &waiter{ch: make(chan struct{})}
		n.waiters[k] = w
	}
	w.refs++
	n.mu.Unlock()
	var once sync.Once
	return w.ch, func() {
		once.Do(func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if w.refs--; w.refs == 0 && n.waiters[k] == w {
				delete(n.waiters, k)
			}
		})
	}
}

func (n *notifier) fire(k resolver.Key) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if w := n.waiters[k]; w != nil {
		close(w.ch)
		delete(n.waiters, k)
	}
	for f := range n.feeds {
		f.add(k)
	}
}

// Feed is a coalesced stream of changed sandbox keys: however often a
// sandbox changes between two calls of Next, it is reported once. Its
// memory is bounded by the number of sandboxes.
type Feed struct {
	n       *notifier
	mu      sync.Mutex
	pending map[resolver.Key]struct{}
	ready   chan struct{} // capacity 1: "pending is not empty"
}

func (n *notifier) subscribe() *Feed {
	f := &Feed{n: n, pending: make(map[resolver.Key]struct{}), ready: make(chan struct{}, 1)}
	n.mu.Lock()
	n.feeds[f] = struct{}{}
	n.mu.Unlock()
	return f
}

func (f *Feed) add(k resolver.Key) {
	f.mu.Lock()
	f.pending[k] = struct{}{}
	f.mu.Unlock()
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// Next blocks until at least one sandbox changed since the previous call
// (or since Subscribe), then returns every key that changed: a name key
// for a sandbox, a UID key for a warm-pool pod. Look the keys up for their
// current state.
func (f *Feed) Next(ctx context.Context) ([]resolver.Key, error) {
	for {
		f.mu.Lock()
		if len(f.pending) > 0 {
			keys := make([]resolver.Key, 0, len(f.pending))
			for k := range f.pending {
				keys = append(keys, k)
			}
			clear(f.pending)
			f.mu.Unlock()
			return keys, nil
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-f.ready:
		}
	}
}

// Close ends the subscription.
func (f *Feed) Close() {
	f.n.mu.Lock()
	delete(f.n.feeds, f)
	f.n.mu.Unlock()
}
