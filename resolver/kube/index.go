package kube

import (
	"slices"
	"sync"
	"time"
	"unique"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sandbox-router/sandbox-router/resolver"
)

type nsName struct{ namespace, name string }

// index holds the entries. Informer handlers write it (one at a time per
// informer, several informers at once); lookups read it under the read
// lock and copy a precomputed result, so a hit allocates nothing.
type index struct {
	mu     sync.RWMutex
	byName map[nsName]*entry
	// byUID holds sandboxes by their UID and unclaimed warm-pool pods by
	// the pod's UID.
	byUID map[types.UID]*entry
	// warm holds unclaimed warm-pool pods by pod UID.
	warm map[types.UID]*entry

	notify *notifier
	// now and observe measure the time from a record's decoding to the
	// moment its change is visible to lookups.
	now     func() int64
	observe func(time.Duration)
	// invalid, when set, is told of annotations that became invalid on a
	// sandbox (not of those that stay invalid across updates).
	invalid func(rec *sandboxRecord, bad sandboxFlags)
}

func newIndex(n *notifier, now func() int64, observe func(time.Duration)) *index {
	return &index{
		byName:  make(map[nsName]*entry),
		byUID:   make(map[types.UID]*entry),
		warm:    make(map[types.UID]*entry),
		notify:  n,
		now:     now,
		observe: observe,
	}
}

func (ix *index) lookup(k resolver.Key) resolver.Result {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if k.UID == "" {
		if e := ix.byName[nsName{k.Namespace, k.Name}]; e != nil {
			return e.compute()
		}
		return resolver.Result{}
	}
	if e := ix.byUID[types.UID(k.UID)]; e != nil {
		// The entry may hold a newer sandbox of the same name than the
		// one this UID belonged to.
		if res := e.compute(); res.UID == k.UID && res.Namespace == k.Namespace {
			return res
		}
	}
	return resolver.Result{}
}

func (ix *index) size() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byName) + len(ix.warm)
}

// snapshot returns every entry's result that routes somewhere.
func (ix *index) snapshot() []resolver.Result {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]resolver.Result, 0, len(ix.byName)+len(ix.warm))
	for _, e := range ix.byName {
		if res := e.compute(); res.State != resolver.StateUnknown {
			out = append(out, res)
		}
	}
	for _, e := range ix.warm {
		if res := e.compute(); res.State != resolver.StateUnknown {
			out = append(out, res)
		}
	}
	return out
}

// change collects what one event changed, so that notifications go out
// after the lock is released.
type change struct {
	keys       []resolver.Key
	receivedAt int64
	// invalidRec is a sandbox record on which annotations became
	// invalid; invalid says which.
	invalidRec *sandboxRecord
	invalid    sandboxFlags
}

func (ix *index) apply(receivedAt int64, fn func(c *change)) {
	c := change{receivedAt: receivedAt}
	ix.mu.Lock()
	fn(&c)
	ix.mu.Unlock()
	if c.invalid != 0 && ix.invalid != nil {
		ix.invalid(c.invalidRec, c.invalid)
	}
	if len(c.keys) == 0 {
		return
	}
	if ix.observe != nil && receivedAt != 0 {
		ix.observe(time.Duration(ix.now() - receivedAt))
	}
	for _, k := range c.keys {
		ix.notify.fire(k)
	}
}

func (ix *index) sandboxEntry(ns, name string, create bool) *entry {
	k := nsName{ns, name}
	e := ix.byName[k]
	if e == nil && create {
		e = &entry{namespace: ns, name: name}
		ix.byName[k] = e
	}
	return e
}

func (ix *index) setSandbox(rec *sandboxRecord) {
	ix.apply(rec.receivedAt, func(c *change) {
		e := ix.sandboxEntry(rec.namespace, rec.name, true)
		// An invalid annotation is reported when it appears, not at each
		// update that still carries it, nor once more per API version.
		var seen sandboxFlags
		for _, v := range e.views {
			if v != nil && v.uid == rec.uid {
				seen |= v.flags
			}
		}
		if bad := rec.flags & invalidAnnotations &^ seen; bad != 0 {
			c.invalidRec, c.invalid = rec, bad
		}
		old := e.views[rec.version]
		e.views[rec.version] = rec
		if old != nil && old.uid != rec.uid {
			ix.dropUID(e, old.uid)
		}
		ix.byUID[rec.uid] = e
		ix.refresh(e, c)
	})
}

func (ix *index) deleteSandbox(rec *sandboxRecord) {
	ix.apply(0, func(c *change) {
		e := ix.sandboxEntry(rec.namespace, rec.name, false)
		if e == nil {
			return
		}
		if old := e.views[rec.version]; old != nil {
			e.views[rec.version] = nil
			ix.dropUID(e, old.uid)
		}
		ix.refresh(e, c)
	})
}

func (ix *index) setPod(old, rec *podRecord) {
	ix.apply(rec.receivedAt, func(c *change) {
		// An update within the same entry replaces the record in place
		// (addPod matches by name): taking it out first would drop a
		// pod-only entry and wake its waiters for nothing.
		if old != nil && ix.podEntry(old, false) != ix.podEntry(rec, false) {
			ix.removePod(old, c)
		}
		ix.addPod(rec, c)
	})
}

func (ix *index) deletePod(rec *podRecord) {
	ix.apply(0, func(c *change) { ix.removePod(rec, c) })
}

// podEntry returns the entry p belongs to: its Sandbox's, or its own as
// an unclaimed warm-pool pod, created if asked. A pod that is neither
// belongs nowhere (nil).
func (ix *index) podEntry(p *podRecord, create bool) *entry {
	switch {
	case p.owner != "":
		return ix.sandboxEntry(p.namespace, p.owner, create)
	case p.warmPool:
		e := ix.warm[p.uid]
		if e == nil && create {
			e = &entry{namespace: p.namespace, name: p.name, warmUID: p.uid, warm: true}
			ix.warm[p.uid] = e
			ix.byUID[p.uid] = e
		}
		return e
	}
	return nil
}

func (ix *index) addPod(p *podRecord, c *change) {
	e := ix.podEntry(p, true)
	if e == nil {
		return // neither owned by a Sandbox nor in a warm pool
	}
	// Pods are told apart by name: the informer keys them so, and a pod
	// recreated under the same name replaces its predecessor's record.
	if i := slices.IndexFunc(e.pods, func(q *podRecord) bool { return q.name == p.name }); i >= 0 {
		e.pods[i] = p
	} else {
		e.pods = append(e.pods, p)
	}
	ix.refresh(e, c)
}

// removePod takes p out of its entry.
func (ix *index) removePod(p *podRecord, c *change) {
	e := ix.podEntry(p, false)
	if e == nil {
		return
	}
	e.pods = slices.DeleteFunc(e.pods, func(q *podRecord) bool { return q.name == p.name })
	if len(e.pods) == 0 {
		e.pods = nil
	}
	ix.refresh(e, c)
}

// dropUID removes uid from the UID index unless another view of e still
// carries it.
func (ix *index) dropUID(e *entry, uid types.UID) {
	for _, v := range e.views {
		if v != nil && v.uid == uid {
			return
		}
	}
	if ix.byUID[uid] == e {
		delete(ix.byUID, uid)
	}
}

// refresh recomputes e's answer, drops the entry once nothing is left of
// it, and records a notification when the answer (or a timeout, see
// signature) changed.
func (ix *index) refresh(e *entry, c *change) {
	res := e.compute()
	var cand *podRecord
	if res.State == resolver.StateStarting {
		cand = e.candidate()
	}
	cur := e.current()
	var meta unique.Handle[sandboxMeta]
	if cur != nil {
		meta = cur.meta
	}
	if sig := signature(&res, cur, cand); sig != e.sig || meta != e.meta {
		e.sig, e.meta = sig, meta
		c.keys = append(c.keys, e.key())
		if e.warm {
			// The router's keys always carry a name (the pod's, for a
			// warm-pool pod), so waiters may hold either key.
			c.keys = append(c.keys, resolver.Key{Namespace: e.namespace, Name: e.name})
		}
	}
	if !e.empty() {
		return
	}
	if e.warm {
		delete(ix.warm, e.warmUID)
		delete(ix.byUID, e.warmUID)
	} else if ix.byName[nsName{e.namespace, e.name}] == e {
		delete(ix.byName, nsName{e.namespace, e.name})
	}
}

// key is the notification key of the entry: its name, or for a warm-pool
// pod its UID.
func (e *entry) key() resolver.Key {
	if e.warm {
		return resolver.Key{Namespace: e.namespace, UID: string(e.warmUID)}
	}
	return resolver.Key{Namespace: e.namespace, Name: e.name}
}
