package kube

import (
	"reflect"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
)

// table holds the records of one kind, from however many informers (one
// per watched namespace), keyed by namespace/name. Reads get copies in
// namespace/name order from a sorted view that is built on the first read
// after a change and shared until the next.
//
// The epoch guards against informers that were stopped (the kind's CRD
// went away, or its served version changed) but still deliver a last
// event: reset bumps it, and writes of an older epoch are dropped.
type table[T any] struct {
	of func(*unstructured.Unstructured) T

	mu      sync.RWMutex
	epoch   uint64
	records map[string]*record[T]
	sorted  []*record[T] // nil when stale
}

func newTable[T any](of func(*unstructured.Unstructured) T) *table[T] {
	return &table[T]{of: of, records: map[string]*record[T]{}}
}

func key(namespace, name string) string { return namespace + "/" + name }

// transform is the informer transform of the table's kind.
func (t *table[T]) transform() cache.TransformFunc { return transform(t.of) }

// currentEpoch is the epoch that informers started now write with.
func (t *table[T]) currentEpoch() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.epoch
}

// set stores r and reports whether the table changed (a record equal to
// the stored one changes nothing: most updates of an object touch fields
// the record does not keep).
func (t *table[T]) set(epoch uint64, r *record[T]) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if epoch != t.epoch {
		return false
	}
	k := key(r.namespace, r.name)
	if old, ok := t.records[k]; ok && reflect.DeepEqual(old.val, r.val) {
		return false
	}
	t.records[k] = r
	t.sorted = nil
	return true
}

// remove deletes r's key and reports whether it was there.
func (t *table[T]) remove(epoch uint64, r *record[T]) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := key(r.namespace, r.name)
	if _, ok := t.records[k]; !ok || epoch != t.epoch {
		return false
	}
	delete(t.records, k)
	t.sorted = nil
	return true
}

// reset empties the table and bumps its epoch; it reports whether the
// table held anything.
func (t *table[T]) reset() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.epoch++
	had := len(t.records) > 0
	clear(t.records)
	t.sorted = nil
	return had
}

// get returns the record of namespace/name.
func (t *table[T]) get(namespace, name string) (T, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	r, ok := t.records[key(namespace, name)]
	if !ok {
		var zero T
		return zero, false
	}
	return r.val, true
}

// view returns the records sorted by namespace and name; the slice is
// shared and never modified.
func (t *table[T]) view() []*record[T] {
	t.mu.RLock()
	s := t.sorted
	t.mu.RUnlock()
	if s != nil {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sorted == nil {
		s := make([]*record[T], 0, len(t.records))
		for _, r := range t.records {
			s = append(s, r)
		}
		slices.SortFunc(s, func(a, b *record[T]) int {
			if c := strings.Compare(a.namespace, b.namespace); c != 0 {
				return c
			}
			return strings.Compare(a.name, b.name)
		})
		t.sorted = s
	}
	return t.sorted
}

// list returns copies of the records of namespace ("" for all), sorted by
// namespace and name.
func (t *table[T]) list(namespace string) []T {
	s := t.view()
	if namespace != "" {
		lo, _ := slices.BinarySearchFunc(s, namespace, func(r *record[T], ns string) int { return strings.Compare(r.namespace, ns) })
		hi := lo
		for hi < len(s) && s[hi].namespace == namespace {
			hi++
		}
		s = s[lo:hi]
	}
	out := make([]T, len(s))
	for i, r := range s {
		out[i] = r.val
	}
	return out
}

// handler feeds the table from one informer started at epoch, calling
// changed after every change.
func (t *table[T]) handler(epoch uint64, changed func()) cache.ResourceEventHandler {
	set := func(obj any) {
		if r, ok := obj.(*record[T]); ok && t.set(epoch, r) {
			changed()
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if r, ok := obj.(*record[T]); ok && t.remove(epoch, r) {
				changed()
			}
		},
	}
}
