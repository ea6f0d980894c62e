package xds

import (
	"context"
	"net/netip"
	"sync"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// fakeResolver is an in-memory resolver whose changes tests drive.
type fakeResolver struct {
	mu      sync.Mutex
	results map[resolver.Key]resolver.Result
	feeds   []*fakeFeed
	synced  chan struct{}
}

func newFakeResolver() *fakeResolver {
	r := &fakeResolver{results: map[resolver.Key]resolver.Result{}, synced: make(chan struct{})}
	close(r.synced)
	return r
}

func (r *fakeResolver) Lookup(k resolver.Key) resolver.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.results[resolver.Key{Namespace: k.Namespace, Name: k.Name}]
}

func (r *fakeResolver) SyncedC() <-chan struct{} { return r.synced }

func (r *fakeResolver) Subscribe() resolver.Feed {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := &fakeFeed{wake: make(chan struct{}, 1)}
	r.feeds = append(r.feeds, f)
	return f
}

// set changes a sandbox and tells the feeds.
func (r *fakeResolver) set(ns, name string, state resolver.State, ip string) {
	k := resolver.Key{Namespace: ns, Name: name}
	res := resolver.Result{State: state, Namespace: ns, Name: name}
	if ip != "" {
		res.PodIP = netip.MustParseAddr(ip)
	}
	r.mu.Lock()
	r.results[k] = res
	feeds := r.feeds
	r.mu.Unlock()
	for _, f := range feeds {
		f.add(k)
	}
}

type fakeFeed struct {
	mu   sync.Mutex
	keys []resolver.Key
	wake chan struct{}
}

func (f *fakeFeed) add(k resolver.Key) {
	f.mu.Lock()
	f.keys = append(f.keys, k)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fakeFeed) Next(ctx context.Context) ([]resolver.Key, error) {
	for {
		f.mu.Lock()
		keys := f.keys
		f.keys = nil
		f.mu.Unlock()
		if len(keys) > 0 {
			return keys, nil
		}
		select {
		case <-f.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (f *fakeFeed) Close() {}
