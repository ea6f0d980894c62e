package kube

import (
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
	feeds   map[*feed]struct{}
}

type waiter struct {
	ch   chan struct{}
	refs int
}

func newNotifier() *notifier {
	return &notifier{waiters: make(map[resolver.Key]*waiter), feeds: make(map[*feed]struct{})}
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
		f.Add(k)
	}
}

// feed implements resolver.Feed: changed keys collect in a set until the
// next call of Next, so its memory is bounded by the number of sandboxes.
type feed struct {
	n *notifier
	*resolver.PendingKeys
}

var _ resolver.Feed = (*feed)(nil)

func (n *notifier) subscribe() *feed {
	f := &feed{n: n, PendingKeys: resolver.NewPendingKeys()}
	n.mu.Lock()
	n.feeds[f] = struct{}{}
	n.mu.Unlock()
	return f
}

// Close implements resolver.Feed.
func (f *feed) Close() {
	f.n.mu.Lock()
	delete(f.n.feeds, f)
	f.n.mu.Unlock()
}
