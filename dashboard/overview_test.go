package dashboard

import (
	"testing"
)

func TestOverview(t *testing.T) {
	act := newFakeActivity(0)
	for i, k := range []string{"web-1", "web-2", "db"} {
		act.held[key("alpha", k)] = i + 1
	}
	act.held[key("beta", "cache")] = 0 // nothing held: not listed
	h := start(t, Options{Sandboxes: fixture(), Activity: act})
	var o overview
	get(t, h, "/api/overview", &o)
	want := map[string]int{"running": 3, "starting": 1, "suspending": 0, "suspended": 2, "finished": 0}
	if o.Sandboxes != 6 || !mapsEqual(o.States, want) || o.Namespaces != 3 {
		t.Errorf("overview %+v", o)
	}
	if o.WarmPool != (warmPool{Pods: 2, Ready: 1}) {
		t.Errorf("warm pool %+v", o.WarmPool)
	}
	if o.HeldRequests == nil || *o.HeldRequests != 6 || len(o.Waking) != 3 || o.Waking[0].Name != "db" || o.Waking[0].HeldRequests != 3 {
		t.Errorf("held %v waking %+v", o.HeldRequests, o.Waking)
	}

	// Without the activator, nothing about requests.
	h = start(t, Options{Sandboxes: fixture()})
	o = overview{}
	get(t, h, "/api/overview", &o)
	if o.HeldRequests != nil || o.Waking != nil {
		t.Errorf("held requests without an activator: %+v", o)
	}
}
