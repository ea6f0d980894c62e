package cluster

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// WaitObject watches the object called name until cond holds (cond(nil):
// it does not exist) or ctx ends, and returns what cond last saw: a test
// waits on the API server's own events, never on a sleep.
func WaitObject(ctx context.Context, res dynamic.ResourceInterface, name string, cond func(*unstructured.Unstructured) bool) (*unstructured.Unstructured, error) {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return res.Watch(ctx, o)
		},
	}
	var last *unstructured.Unstructured
	check := func(u *unstructured.Unstructured) bool {
		last = u
		return cond(u)
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &unstructured.Unstructured{},
		func(store cache.Store) (bool, error) {
			items := store.List()
			if len(items) == 0 {
				return check(nil), nil
			}
			return check(items[0].(*unstructured.Unstructured)), nil
		},
		func(ev watch.Event) (bool, error) {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				return false, fmt.Errorf("unexpected %T", ev.Object)
			}
			if ev.Type == watch.Deleted {
				return check(nil), nil
			}
			return check(u), nil
		})
	return last, err
}
