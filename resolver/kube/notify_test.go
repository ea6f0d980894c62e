package kube

import (
	"context"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestChangedWakesAllWaitersOnce checks that waiters of one sandbox share
// a channel, are woken by a change of its answer only, and leave nothing
// behind when they stop waiting.
func TestChangedWakesAllWaitersOnce(t *testing.T) {
	ix := newTestIndex()
	k := byName("a")
	ch1, rel1 := ix.notify.wait(k)
	ch2, rel2 := ix.notify.wait(resolver.Key{Namespace: "ns", Name: "a", UID: "ignored"})
	other, relOther := ix.notify.wait(byName("b"))

	ix.setSandbox(sb("a", "u1", 1)) // unknown -> starting
	if !closed(ch1) || !closed(ch2) {
		t.Fatal("waiters of a were not woken")
	}
	if closed(other) {
		t.Fatal("a waiter of b was woken by a change of a")
	}
	rel1()
	rel2()
	rel2() // releasing twice is harmless

	ch3, rel3 := ix.notify.wait(k)
	ix.setSandbox(sb("a", "u1", 2)) // same answer: no wake-up
	if closed(ch3) {
		t.Fatal("woken although the answer did not change")
	}
	rel3()
	relOther()
	if n := len(ix.notify.waiters); n != 0 {
		t.Fatalf("%d waiter entries left after release", n)
	}
}

// TestFeedCoalesces checks that a feed reports each changed key once per
// Next, whatever the number of changes, and blocks until there is one.
func TestFeedCoalesces(t *testing.T) {
	ix := newTestIndex()
	f := ix.notify.subscribe()
	defer f.Close()
	for i := range 5 {
		ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", i%2 == 0))
		ix.setSandbox(sb("b", "u2", uint64(i), func(r *sandboxRecord) {
			if i%2 == 0 {
				r.flags |= modeSuspended
			}
		}))
	}
	ix.setSandbox(sb("a", "u1", 9))
	keys, err := f.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("got %v, want a and b once each", keys)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if keys, err := f.Next(ctx); err == nil {
		t.Fatalf("Next returned %v with nothing pending", keys)
	}
	done := make(chan []resolver.Key)
	go func() {
		keys, _ := f.Next(context.Background())
		done <- keys
	}()
	ix.setSandbox(sb("c", "u3", 1))
	if keys := <-done; len(keys) != 1 || keys[0] != byName("c") {
		t.Fatalf("got %v, want [c]", keys)
	}
}

// TestDetailsChangeNotifies: a change of labels, conditions or ports
// alone (the same routing answer) reaches the feed, for the views that
// show them; an update that changes neither does not.
func TestDetailsChangeNotifies(t *testing.T) {
	ix := newTestIndex()
	labelled := func(rv uint64, labels map[string]string) *sandboxRecord {
		u := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{}}}
		u.SetLabels(labels)
		return sb("a", "u1", rv, func(r *sandboxRecord) { r.meta = metaOf(u) })
	}
	ix.setSandbox(labelled(1, map[string]string{"app": "x"}))
	f := ix.notify.subscribe()
	defer f.Close()
	ix.setSandbox(labelled(2, map[string]string{"app": "x"})) // nothing a view shows changed
	ix.setSandbox(labelled(3, map[string]string{"app": "y"}))
	keys, err := f.Next(t.Context())
	if err != nil || len(keys) != 1 || keys[0] != byName("a") {
		t.Fatalf("got %v %v, want [a]", keys, err)
	}
	ix.setSandbox(labelled(4, map[string]string{"app": "y"}))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if keys, err := f.Next(ctx); err == nil {
		t.Fatalf("Next returned %v for an update that changed nothing", keys)
	}
}
