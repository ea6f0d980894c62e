package dashboard

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func TestCatalogTellsWarmPoolPodsFromSandboxes(t *testing.T) {
	fr := newFakeResolver()
	fr.set(running("a", "sb1", "uid-sb1", "10.0.0.1"))
	fr.setWarm(running("a", "pool-xyz", "uid-pod", "10.0.0.2"))
	c := newCatalog(fr)
	v := c.load()
	if len(v.items) != 2 {
		t.Fatalf("items = %d, want 2", len(v.items))
	}
	sb, warm := v.find(key("a", "sb1")), v.find(resolver.Key{Namespace: "a", UID: "uid-pod"})
	if sb == nil || sb.warm || warm == nil || !warm.warm {
		t.Fatalf("sandbox %+v, warm %+v", sb, warm)
	}
	if got := v.counts["a"]; got.sandboxes[resolver.StateRunning] != 1 || got.warm[resolver.StateRunning] != 1 {
		t.Fatalf("counts %+v", got)
	}

	// The pod is claimed: it stops being a warm-pool pod, and a sandbox
	// appears.
	fr.removeWarm("a", "uid-pod")
	fr.set(running("a", "claimed", "uid-claimed", "10.0.0.2"))
	changes := c.apply([]resolver.Key{
		{Namespace: "a", UID: "uid-pod"}, key("a", "pool-xyz"), key("a", "claimed"),
	})
	if len(changes) != 2 {
		t.Fatalf("changes = %d, want 2 (a tombstone and a new sandbox)", len(changes))
	}
	v = c.cur.Load()
	if v.find(resolver.Key{Namespace: "a", UID: "uid-pod"}) != nil || v.find(key("a", "claimed")) == nil {
		t.Fatal("the claim is not reflected")
	}
	if v.gen != 2 {
		t.Fatalf("generation %d, want 2", v.gen)
	}
	// Nothing changed: no generation.
	if c.apply([]resolver.Key{key("a", "sb1")}) != nil || c.cur.Load().gen != 2 {
		t.Fatal("an unchanged answer made a generation")
	}
}

// TestCatalogFollowsRandomChanges applies random batches and checks each
// generation against a catalog loaded afresh: same items, same order,
// same counts.
func TestCatalogFollowsRandomChanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fr := newFakeResolver()
	states := []resolver.State{resolver.StateRunning, resolver.StateStarting, resolver.StateSuspending, resolver.StateSuspended, resolver.StateFinished}
	for i := range 200 {
		fr.set(inState(states[i%5], fmt.Sprintf("ns%d", i%7), fmt.Sprintf("sb%03d", i), fmt.Sprintf("u%d", i)))
	}
	c := newCatalog(fr)
	feed := fr.Subscribe()
	c.load()
	uid := 1000
	for round := range 300 {
		for range rng.IntN(20) + 1 {
			ns, name := fmt.Sprintf("ns%d", rng.IntN(8)), fmt.Sprintf("sb%03d", rng.IntN(260))
			switch op := rng.IntN(10); {
			case op < 5:
				uid++
				fr.set(inState(states[rng.IntN(5)], ns, name, fmt.Sprintf("u%d", uid)))
			case op < 7:
				fr.remove(ns, name)
			case op < 9:
				uid++
				fr.setWarm(inState(states[rng.IntN(2)], ns, fmt.Sprintf("pool-%d", rng.IntN(30)), fmt.Sprintf("w%d", uid)))
			default:
				for u, r := range fr.warm {
					fr.removeWarm(r.Namespace, u)
					break
				}
			}
		}
		keys, err := feed.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if round%2 == 0 {
			c.cur.Load().order(sortName, nil, time.Time{}) // built: the next view may inherit it
		}
		c.apply(keys)
		got := c.cur.Load()
		want := newCatalog(fr).load()
		if byName := got.order(sortName, nil, time.Time{}); !slices.IsSortedFunc(byName, compareByName) || len(byName) != len(want.items) {
			t.Fatalf("round %d: the order by name is wrong", round)
		}
		if !slices.EqualFunc(got.items, want.items, func(a, b *item) bool { return *a == *b }) {
			t.Fatalf("round %d: items differ from a fresh load (%d vs %d)", round, len(got.items), len(want.items))
		}
		if !slices.IsSortedFunc(got.items, compareItems) {
			t.Fatalf("round %d: items out of order", round)
		}
		if len(got.counts) != len(want.counts) {
			t.Fatalf("round %d: %d namespaces counted, want %d", round, len(got.counts), len(want.counts))
		}
		for ns, wc := range want.counts {
			if gc := got.counts[ns]; gc == nil || *gc != *wc {
				t.Fatalf("round %d: counts of %s = %+v, want %+v", round, ns, gc, wc)
			}
		}
	}
}

func TestOrders(t *testing.T) {
	items := []*item{
		{res: inState(resolver.StateSuspended, "a", "z", "1")},
		{res: inState(resolver.StateRunning, "a", "y", "2")},
		{res: inState(resolver.StateRunning, "b", "x", "3")},
		{res: inState(resolver.StateStarting, "b", "y", "4")},
	}
	v := &view{items: items}
	names := func(its []*item) (out []string) {
		for _, it := range its {
			out = append(out, it.res.Namespace+"/"+it.res.Name)
		}
		return out
	}
	if got, want := names(v.order(sortName, nil, time.Time{})), []string{"b/x", "a/y", "b/y", "a/z"}; !slices.Equal(got, want) {
		t.Errorf("by name %v, want %v", got, want)
	}
	if got, want := names(v.order(sortState, nil, time.Time{})), []string{"a/y", "b/x", "b/y", "a/z"}; !slices.Equal(got, want) {
		t.Errorf("by state %v, want %v", got, want)
	}
}
