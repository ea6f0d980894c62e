package main

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/xds"
)

// The naming of the benchmark: sandbox i is "sb-<i>" in namespace
// "ns-<i mod 100>", reached at sb-<i>.ns-<i mod 100>.<baseDomain> on the
// default port.
const (
	baseDomain  = "sandboxes.example.com"
	sandboxPort = 8888
	namespaces  = 100
)

func sandboxName(i int) string { return "sb-" + strconv.Itoa(i) }
func namespaceOf(i int) string { return "ns-" + strconv.Itoa(i%namespaces) }
func keyOf(i int) resolver.Key {
	return resolver.Key{Namespace: namespaceOf(i), Name: sandboxName(i)}
}
func hostOf(i int) string { return sandboxName(i) + "." + namespaceOf(i) + "." + baseDomain }

// vhdsName is the name Envoy's VHDS asks for: <route config>/<host>.
func vhdsName(i int) string { return xds.RouteConfigName + "/" + hostOf(i) }

// indexOfName reads i back from a VHDS name; -1 if it is not one of ours.
func indexOfName(name string) int {
	rest, ok := strings.CutPrefix(name, xds.RouteConfigName+"/sb-")
	if !ok {
		return -1
	}
	end := strings.IndexByte(rest, '.')
	if end <= 0 {
		return -1
	}
	i, err := strconv.Atoi(rest[:end])
	if err != nil {
		return -1
	}
	return i
}

// indexOfKey reads i back from a resolver key; -1 if it is not one of ours.
func indexOfKey(k resolver.Key) int {
	rest, ok := strings.CutPrefix(k.Name, "sb-")
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || namespaceOf(i) != k.Namespace {
		return -1
	}
	return i
}

// initialIP is the pod address of a sandbox that runs from the start:
// 10.0.0.0/9 holds 8 million of them.
func initialIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16 & 127), byte(i >> 8), byte(i)})
}

// resumedIP is the n-th address handed out on a resume: 10.128.0.0/9, so
// no resume reuses an address the sandbox or another held before.
func resumedIP(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(128 | n>>16&127), byte(n >> 8), byte(n)})
}

// signature is what a sandbox's virtual host routes to: "pod:<ip>:<port>"
// for a running sandbox, "router" for anything else. It is how a client
// tells which flip a virtual host it received carries.
func signature(r resolver.Result) string {
	if r.State == resolver.StateRunning && r.PodIP.IsValid() {
		return "pod:" + netip.AddrPortFrom(r.PodIP, sandboxPort).String()
	}
	return "router"
}

// fleet is the synthetic resolver: n sandboxes in memory, the even ones
// running and the odd ones suspended at the start. It satisfies
// xds.Resolver.
type fleet struct {
	synced chan struct{}

	mu      sync.RWMutex
	index   map[resolver.Key]int32
	state   []resolver.Result
	resumed uint32
	feeds   map[*feed]struct{}
}

var _ xds.Resolver = (*fleet)(nil)

func newFleet(n int) *fleet {
	f := &fleet{
		synced: make(chan struct{}),
		index:  make(map[resolver.Key]int32, n),
		state:  make([]resolver.Result, n),
		feeds:  map[*feed]struct{}{},
	}
	for i := range n {
		k := keyOf(i)
		f.index[k] = int32(i)
		r := resolver.Result{State: resolver.StateSuspended, Namespace: k.Namespace, Name: k.Name}
		if i%2 == 0 {
			r.State, r.PodIP = resolver.StateRunning, initialIP(i)
		}
		f.state[i] = r
	}
	close(f.synced)
	return f
}

func (f *fleet) size() int { return len(f.state) }

// Lookup answers by namespace and name; the benchmark has no UID lookups.
func (f *fleet) Lookup(k resolver.Key) resolver.Result {
	if k.UID != "" {
		return resolver.Result{}
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	i, ok := f.index[k]
	if !ok {
		return resolver.Result{}
	}
	return f.state[i]
}

// at is sandbox i's current state.
func (f *fleet) at(i int) resolver.Result {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state[i]
}

func (f *fleet) SyncedC() <-chan struct{} { return f.synced }

func (f *fleet) Subscribe() resolver.Feed {
	fd := &feed{f: f, pending: map[resolver.Key]struct{}{}, wake: make(chan struct{}, 1)}
	f.mu.Lock()
	f.feeds[fd] = struct{}{}
	f.mu.Unlock()
	return fd
}

// flip suspends sandbox i if it runs, or resumes it on a new address, and
// tells every feed. It returns the new signature and the moment the key
// became available to the feeds' readers.
func (f *fleet) flip(i int) (sig string, available int64) {
	f.mu.Lock()
	r := &f.state[i]
	if r.State == resolver.StateRunning {
		r.State, r.PodIP = resolver.StateSuspended, netip.Addr{}
	} else {
		r.State, r.PodIP = resolver.StateRunning, resumedIP(f.resumed)
		f.resumed++
	}
	sig = signature(*r)
	k := resolver.Key{Namespace: r.Namespace, Name: r.Name}
	feeds := make([]*feed, 0, len(f.feeds))
	for fd := range f.feeds {
		feeds = append(feeds, fd)
	}
	f.mu.Unlock()
	available = mono()
	for _, fd := range feeds {
		fd.add(k)
	}
	return sig, available
}

// feed is a coalesced set of changed keys, in the order they first changed.
type feed struct {
	f    *fleet
	wake chan struct{}

	mu      sync.Mutex
	pending map[resolver.Key]struct{}
	order   []resolver.Key
}

func (fd *feed) add(k resolver.Key) {
	fd.mu.Lock()
	if _, dup := fd.pending[k]; !dup {
		fd.pending[k] = struct{}{}
		fd.order = append(fd.order, k)
	}
	fd.mu.Unlock()
	select {
	case fd.wake <- struct{}{}:
	default:
	}
}

// Next returns every key that changed since the previous call, waiting for
// one if there is none.
func (fd *feed) Next(ctx context.Context) ([]resolver.Key, error) {
	for {
		fd.mu.Lock()
		if len(fd.order) > 0 {
			keys := fd.order
			fd.order = nil
			clear(fd.pending)
			fd.mu.Unlock()
			return keys, nil
		}
		fd.mu.Unlock()
		select {
		case <-fd.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (fd *feed) Close() {
	fd.f.mu.Lock()
	delete(fd.f.feeds, fd)
	fd.f.mu.Unlock()
}
