package dashboard

import (
	"slices"
	"strings"
	"sync/atomic"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// item is one entry of the catalog: a sandbox, or an unclaimed warm-pool
// pod. Items are never changed once published in a view; a change
// replaces the item.
type item struct {
	res  resolver.Result
	warm bool
	// meta is the sandbox's labels, pod and creation time (nil for a
	// warm-pool pod, and without SandboxDetails).
	meta *itemMeta
	// removed marks the tombstone an event carries for an item that went
	// away; tombstones never appear in a view.
	removed bool
}

// key is the catalog key of the item, the one the feed reports it under:
// the name for a sandbox, the pod's UID for a warm-pool pod.
func (it *item) key() resolver.Key {
	if it.warm {
		return resolver.Key{Namespace: it.res.Namespace, UID: it.res.UID}
	}
	return resolver.Key{Namespace: it.res.Namespace, Name: it.res.Name}
}

// compareItems is the catalog's own order: namespace, name, sandboxes
// before warm-pool pods, then a warm-pool pod's UID. A sandbox's UID is
// left out on purpose: a sandbox recreated under its name keeps its place,
// so a change never moves an item and can be applied by binary search.
func compareItems(a, b *item) int {
	if c := strings.Compare(a.res.Namespace, b.res.Namespace); c != 0 {
		return c
	}
	if c := strings.Compare(a.res.Name, b.res.Name); c != 0 {
		return c
	}
	switch {
	case a.warm == b.warm && a.warm:
		return strings.Compare(a.res.UID, b.res.UID)
	case a.warm == b.warm:
		return 0
	case a.warm:
		return 1
	}
	return -1
}

// numStates sizes the per-state counters (resolver.State values).
const numStates = int(resolver.StateFinished) + 1

// stateCounts counts a namespace's sandboxes and warm-pool pods by state.
type stateCounts struct {
	sandboxes [numStates]int
	warm      [numStates]int
}

func (c *stateCounts) add(it *item, d int) {
	if it.warm {
		c.warm[it.res.State] += d
	} else {
		c.sandboxes[it.res.State] += d
	}
}

func (c *stateCounts) empty() bool {
	return *c == stateCounts{}
}

// view is one generation of the catalog. It is immutable, so that every
// request reads a consistent state without a lock, and whatever is
// derived from it (the sorted orders) can be cached on it.
type view struct {
	gen    uint64
	items  []*item                 // in compareItems order
	counts map[string]*stateCounts // by namespace; never holds an empty one
	orders orders
}

// find returns the item with key k, or nil. A warm-pool pod's key has no
// name, so it is looked for among the namespace's warm-pool pods.
func (v *view) find(k resolver.Key) *item {
	if k.Name != "" {
		probe := &item{res: resolver.Result{Namespace: k.Namespace, Name: k.Name}}
		if i, ok := slices.BinarySearchFunc(v.items, probe, compareItems); ok {
			return v.items[i]
		}
		return nil
	}
	for _, it := range v.namespaceRange(k.Namespace) {
		if it.warm && it.res.UID == k.UID {
			return it
		}
	}
	return nil
}

// catalog is the dashboard's own copy of the resolver's state. Only the
// goroutine that runs the feed (Handler.Run) writes it; requests read the
// current view.
type catalog struct {
	sb  Sandboxes
	det SandboxDetails // nil: the resolver keeps no details
	cur atomic.Pointer[view]
	// byKey is every item by catalog key: the writer's index, so that a
	// change finds what it replaces without searching the view.
	byKey map[resolver.Key]*item
}

func newCatalog(sb Sandboxes) *catalog {
	det, _ := sb.(SandboxDetails)
	return &catalog{sb: sb, det: det, byKey: make(map[resolver.Key]*item)}
}

// load builds the first generation from a snapshot. Subscribe before
// calling it, so that no change falls between the two.
func (c *catalog) load() *view {
	snap := c.sb.Snapshot()
	v := &view{gen: 1, items: make([]*item, 0, len(snap)), counts: make(map[string]*stateCounts)}
	for _, res := range snap {
		if res.State == resolver.StateUnknown {
			continue
		}
		it := &item{res: res, warm: c.isWarm(res)}
		k := it.key()
		if _, dup := c.byKey[k]; dup {
			continue
		}
		if !it.warm {
			it.meta = c.metaOf(k)
		}
		c.byKey[k] = it
		v.items = append(v.items, it)
		nc := v.counts[res.Namespace]
		if nc == nil {
			nc = &stateCounts{}
			v.counts[res.Namespace] = nc
		}
		nc.add(it, 1)
	}
	slices.SortFunc(v.items, compareItems)
	c.cur.Store(v)
	return v
}

// isWarm tells an unclaimed warm-pool pod from a sandbox: the snapshot
// reports it under the pod's name and UID, and no sandbox of that name has
// that UID.
func (c *catalog) isWarm(res resolver.Result) bool {
	return c.sb.Lookup(resolver.Key{Namespace: res.Namespace, Name: res.Name}).UID != res.UID
}

// resolve is the current item for a key the feed reported, or nil when it
// is gone (or a warm-pool pod was claimed and is a sandbox's pod now).
func (c *catalog) resolve(k resolver.Key) (resolver.Key, *item) {
	if k.Name != "" {
		k = resolver.Key{Namespace: k.Namespace, Name: k.Name}
		if res := c.sb.Lookup(k); res.State != resolver.StateUnknown {
			return k, &item{res: res, meta: c.metaOf(k)}
		}
		return k, nil
	}
	k = resolver.Key{Namespace: k.Namespace, UID: k.UID}
	if res := c.sb.Lookup(k); res.State != resolver.StateUnknown && c.isWarm(res) {
		return k, &item{res: res, warm: true}
	}
	return k, nil
}

// apply looks the changed keys up and publishes the next generation. It
// returns what changed, as the new items and tombstones for the removed
// ones (nil when nothing did: the feed may report a key whose answer is
// the same as the dashboard's).
func (c *catalog) apply(keys []resolver.Key) []*item {
	old := c.cur.Load()
	var (
		changes  []*item
		replaced []*item // new items that take the place of an old one
		added    []*item
		removed  map[*item]bool
		counts   map[string]*stateCounts
		copied   map[string]bool // namespaces whose counts this batch copied
	)
	count := func(it *item, d int) {
		if counts == nil {
			counts = make(map[string]*stateCounts, len(old.counts)+1)
			for ns, nc := range old.counts {
				counts[ns] = nc
			}
			copied = make(map[string]bool)
		}
		ns := it.res.Namespace
		if !copied[ns] {
			nc := &stateCounts{}
			if prev := counts[ns]; prev != nil {
				*nc = *prev
			}
			counts[ns] = nc
			copied[ns] = true
		}
		counts[ns].add(it, d)
	}
	for _, k := range keys {
		k, nu := c.resolve(k)
		prev := c.byKey[k]
		switch {
		case prev == nil && nu == nil:
			continue
		case prev != nil && nu != nil && prev.res == nu.res && prev.meta.equal(nu.meta):
			continue
		case prev == nil:
			added = append(added, nu)
			c.byKey[k] = nu
			changes = append(changes, nu)
		case nu == nil:
			if removed == nil {
				removed = make(map[*item]bool)
			}
			removed[prev] = true
			delete(c.byKey, k)
			changes = append(changes, &item{res: prev.res, warm: prev.warm, removed: true})
		default:
			replaced = append(replaced, nu)
			c.byKey[k] = nu
			changes = append(changes, nu)
		}
		if prev != nil {
			count(prev, -1)
		}
		if nu != nil {
			count(nu, 1)
		}
	}
	if len(changes) == 0 {
		return nil
	}
	for ns, nc := range counts {
		if nc.empty() {
			delete(counts, ns)
		}
	}
	next := &view{gen: old.gen + 1, counts: counts}
	if len(added) == 0 && len(removed) == 0 {
		// Only answers changed: same members, same places.
		next.items = slices.Clone(old.items)
		for _, nu := range replaced {
			if i, ok := slices.BinarySearchFunc(next.items, nu, compareItems); ok {
				next.items[i] = nu
			}
		}
		old.inherit(next, replaced)
	} else {
		next.items = merge(old.items, replaced, added, removed)
	}
	c.cur.Store(next)
	return changes
}

// merge is items without removed, with replaced put in place and added
// merged in: one pass, no sort of the whole catalog.
func merge(items, replaced, added []*item, removed map[*item]bool) []*item {
	slices.SortFunc(added, compareItems)
	slices.SortFunc(replaced, compareItems)
	out := make([]*item, 0, len(items)+len(added)-len(removed))
	a, r := 0, 0
	for _, it := range items {
		if removed[it] {
			continue
		}
		for a < len(added) && compareItems(added[a], it) < 0 {
			out = append(out, added[a])
			a++
		}
		for r < len(replaced) && compareItems(replaced[r], it) < 0 {
			r++ // not a member: cannot happen, skip
		}
		if r < len(replaced) && compareItems(replaced[r], it) == 0 {
			it = replaced[r]
			r++
		}
		out = append(out, it)
	}
	return append(out, added[a:]...)
}
