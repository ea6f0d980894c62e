package dashboard

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// detailsResolver adds SandboxDetails to the fake resolver.
type detailsResolver struct {
	*fakeResolver
	dmu     sync.Mutex
	details map[resolver.Key]resolver.Details
}

func (d *detailsResolver) Details(k resolver.Key) (resolver.Details, bool) {
	d.dmu.Lock()
	defer d.dmu.Unlock()
	det, ok := d.details[resolver.Key{Namespace: k.Namespace, Name: k.Name}]
	return det, ok
}

func (d *detailsResolver) setDetails(ns, name string, det resolver.Details) {
	d.dmu.Lock()
	d.details[key(ns, name)] = det
	d.dmu.Unlock()
	d.fire(key(ns, name))
}

func TestDetailsInTableAndSandbox(t *testing.T) {
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	dr := &detailsResolver{fakeResolver: fixture(), details: map[resolver.Key]resolver.Details{
		key("alpha", "web-1"): {Created: created, Pod: "web-1-pod", Labels: []resolver.Label{{Key: "app", Value: "web"}, {Key: "tier", Value: "front"}},
			Conditions: []resolver.Condition{{Type: "Ready", Status: "True", Reason: "PodReady"}},
			Ports:      []resolver.Port{{Container: "main", Name: "http", Number: 8888}}},
		key("alpha", "web-2"): {Labels: []resolver.Label{{Key: "app", Value: "web"}}},
		key("beta", "web-3"):  {Labels: []resolver.Label{{Key: "app", Value: "api"}}},
	}}
	h := start(t, Options{Sandboxes: dr})

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"?label=app%3Dweb", []string{"alpha/web-1", "alpha/web-2"}},
		{"?label=app", []string{"alpha/web-1", "alpha/web-2", "beta/web-3"}},
		{"?label=app!%3Dweb", []string{"alpha/db", "beta/cache", "beta/web-3", "secret/web-4"}},
		{"?label=app%3Dweb,tier%3Dfront", []string{"alpha/web-1"}},
		{"?label=!app&namespace=beta", []string{"beta/cache"}},
		{"?label=app%3Dweb&state=suspended", []string{"alpha/web-2"}},
	} {
		var ans tableAnswer
		if rec := get(t, h, "/api/sandboxes"+tc.query, &ans); rec.Code != 200 {
			t.Fatalf("%s: %d %s", tc.query, rec.Code, rec.Body)
		}
		if got := rowNames(ans.Rows); !slices.Equal(got, tc.want) || ans.Total != len(tc.want) {
			t.Errorf("%s: rows %v (total %d), want %v", tc.query, got, ans.Total, tc.want)
		}
	}
	if rec := get(t, h, "/api/sandboxes?label=app+in+(a)", nil); rec.Code != 400 {
		t.Errorf("bad selector: %d, want 400", rec.Code)
	}

	var ans tableAnswer
	get(t, h, "/api/sandboxes?label=tier%3Dfront", &ans)
	if len(ans.Rows) != 1 || ans.Rows[0].Pod != "web-1-pod" || !ans.Rows[0].Created.Equal(created) {
		t.Fatalf("row: %+v", ans.Rows)
	}

	var sb sandboxAnswer
	get(t, h, "/api/sandboxes/alpha/web-1", &sb)
	if sb.Labels["tier"] != "front" || len(sb.Conditions) != 1 || sb.Conditions[0].Reason != "PodReady" || len(sb.Ports) != 1 || sb.Ports[0].Number != 8888 {
		t.Fatalf("sandbox answer: %+v", sb)
	}

	// A label change alone (the routing answer the same) reaches the
	// table: the feed reports the key and the catalog sees new details.
	dr.setDetails("beta", "web-3", resolver.Details{Labels: []resolver.Label{{Key: "app", Value: "web"}}})
	eventually(t, "relabelled beta/web-3 in the table", func() bool {
		var a tableAnswer
		get(t, h, "/api/sandboxes?label=app%3Dweb", &a)
		return slices.Equal(rowNames(a.Rows), []string{"alpha/web-1", "alpha/web-2", "beta/web-3"})
	})
}

// TestEventsOfAPredecessorLeftOut: the event log is kept by name; a
// sandbox recreated under its name does not show the events from before
// its creation.
func TestEventsOfAPredecessorLeftOut(t *testing.T) {
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	dr := &detailsResolver{fakeResolver: fixture(), details: map[resolver.Key]resolver.Details{key("alpha", "web-1"): {Created: created}}}
	fc := &fakeCounts{fakeActivity: newFakeActivity(0), counts: map[resolver.Key]uint64{}, events: map[resolver.Key][]sandboxEvent{
		key("alpha", "web-1"): {
			{At: created.Add(time.Minute), Kind: "wake", Text: "this one's", Count: 1},
			{At: created.Add(-time.Hour), Kind: "suspended", Text: "the predecessor's", Count: 1},
		},
	}}
	h := start(t, Options{Sandboxes: dr, Activity: fc})
	var a sandboxAnswer
	get(t, h, "/api/sandboxes/alpha/web-1", &a)
	if len(a.Events) != 1 || a.Events[0].Text != "this one's" {
		t.Fatalf("events %+v, want this sandbox's only", a.Events)
	}
}
