package dashboard

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// sortKey names a column the table sorts by.
type sortKey uint8

const (
	sortNamespace sortKey = iota // namespace, then name: the catalog's own order
	sortName                     // name, then namespace
	sortState                    // state, then namespace and name
	sortActivity                 // last activity, then namespace and name
)

var sortNames = map[string]sortKey{
	"namespace":    sortNamespace,
	"name":         sortName,
	"state":        sortState,
	"lastActivity": sortActivity,
}

// activityTTL is how long an order by last activity is reused. Last
// activity changes with every request and is not in the feed, so that order
// cannot be keyed by the generation alone; rebuilding it costs a lifecycle
// read per sandbox, which a second of staleness keeps rare.
const activityTTL = time.Second

// orders are a view's sorted orders, built at the first request that
// needs one and shared by every request of the same generation: a page
// request is then a filtered walk of a ready order, not a sort.
type orders struct {
	mu         sync.Mutex
	byName     []*item
	byState    []*item
	byActivity []*item
	activityAt time.Time
}

// order returns the items of v in the order of key (ascending).
func (v *view) order(key sortKey, act lastActivityFunc, now time.Time) []*item {
	if key == sortNamespace {
		return v.items
	}
	o := &v.orders
	o.mu.Lock()
	defer o.mu.Unlock()
	switch key {
	case sortName:
		if o.byName == nil {
			o.byName = slices.Clone(v.items)
			slices.SortFunc(o.byName, compareByName)
		}
		return o.byName
	case sortState:
		if o.byState == nil {
			o.byState = byState(v.items)
		}
		return o.byState
	default:
		if o.byActivity == nil || now.Sub(o.activityAt) >= activityTTL || now.Before(o.activityAt) {
			o.byActivity = byActivity(v.items, act)
			o.activityAt = now
		}
		return o.byActivity
	}
}

// compareByName orders by name, then as the catalog does: a total order,
// so that an item's place can be found by binary search.
func compareByName(a, b *item) int {
	if c := strings.Compare(a.res.Name, b.res.Name); c != 0 {
		return c
	}
	return compareItems(a, b)
}

// inherit gives next the orders of v that a batch of replacements only
// (no item added or removed) leaves in place: the order by name, with the
// replaced items swapped in, costs a copy instead of a sort. The orders by
// state and activity depend on what changed and are rebuilt when asked.
func (v *view) inherit(next *view, replaced []*item) {
	v.orders.mu.Lock()
	byName := v.orders.byName
	v.orders.mu.Unlock()
	if byName == nil {
		return
	}
	nb := slices.Clone(byName)
	for _, nu := range replaced {
		if i, ok := slices.BinarySearchFunc(nb, nu, compareByName); ok {
			nb[i] = nu
		}
	}
	next.orders.byName = nb
}

// namespaceRange narrows the catalog order to one namespace (its items
// are adjacent there).
func (v *view) namespaceRange(ns string) []*item {
	cmpNS := func(it *item, ns string) int { return strings.Compare(it.res.Namespace, ns) }
	lo, _ := slices.BinarySearchFunc(v.items, ns, cmpNS)
	n, _ := slices.BinarySearchFunc(v.items[lo:], ns, func(it *item, ns string) int {
		if it.res.Namespace == ns {
			return -1
		}
		return 1
	})
	return v.items[lo : lo+n]
}

// byState buckets the catalog order by state: stable, linear, no
// comparisons.
func byState(items []*item) []*item {
	var n [numStates]int
	for _, it := range items {
		n[it.res.State]++
	}
	var start [numStates]int
	for s := 1; s < numStates; s++ {
		start[s] = start[s-1] + n[s-1]
	}
	out := make([]*item, len(items))
	for _, it := range items {
		out[start[it.res.State]] = it
		start[it.res.State]++
	}
	return out
}

// lastActivityFunc is the last activity known of a sandbox (zero if none).
type lastActivityFunc func(it *item) time.Time

func byActivity(items []*item, last lastActivityFunc) []*item {
	type keyed struct {
		it *item
		at int64
	}
	ks := make([]keyed, len(items))
	for i, it := range items {
		var at int64
		if t := last(it); !t.IsZero() {
			at = t.UnixNano()
		}
		ks[i] = keyed{it, at}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return cmp.Compare(a.at, b.at) })
	out := make([]*item, len(items))
	for i, k := range ks {
		out[i] = k.it
	}
	return out
}

// lastActivity is the later of the sandbox's recorded activity (its
// annotation, written by whichever replica saw traffic) and this
// replica's own.
func lastActivity(sb Sandboxes, act Activity) lastActivityFunc {
	return func(it *item) time.Time {
		if it.warm {
			return time.Time{}
		}
		k := resolver.Key{Namespace: it.res.Namespace, Name: it.res.Name, UID: it.res.UID}
		var last time.Time
		if lc, ok := sb.Lifecycle(k); ok {
			last = lc.LastActivity
		}
		if act != nil {
			if _, here := act.State(resolver.Key{Namespace: k.Namespace, Name: k.Name}); here.After(last) {
				last = here
			}
		}
		return last
	}
}
