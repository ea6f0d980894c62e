package kube

import (
	"reflect"
	"testing"
)

func poolRec(ns, name, template string, ready int32) *record[WarmPool] {
	return &record[WarmPool]{namespace: ns, name: name, val: WarmPool{Namespace: ns, Name: name, Template: template, Desired: 1, Ready: ready}}
}

func names(pools []WarmPool) []string {
	out := []string{}
	for _, p := range pools {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	return out
}

func TestTableSortsFiltersAndGuardsEpochs(t *testing.T) {
	tb := newTable(warmPoolOf)
	e := tb.currentEpoch()
	for _, r := range []*record[WarmPool]{
		poolRec("team-b", "a", "t", 0), poolRec("team-a", "z", "t", 0), poolRec("team-a", "b", "t", 0),
		poolRec("team-c", "a", "t", 0), poolRec("team-ab", "a", "t", 0),
	} {
		if !tb.set(e, r) {
			t.Fatalf("set %s/%s: no change", r.namespace, r.name)
		}
	}
	if got, want := names(tb.list("")), []string{"team-a/b", "team-a/z", "team-ab/a", "team-b/a", "team-c/a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("all: %v, want %v", got, want)
	}
	for ns, want := range map[string][]string{
		"team-a": {"team-a/b", "team-a/z"}, "team-ab": {"team-ab/a"}, "team-c": {"team-c/a"}, "team": {}, "zzz": {}, "a": {},
	} {
		if got := names(tb.list(ns)); !reflect.DeepEqual(got, want) {
			t.Errorf("namespace %s: %v, want %v", ns, got, want)
		}
	}
	// The view is cached until a change; the copies are the caller's.
	v := tb.view()
	got := tb.list("team-a")
	got[0].Name = "changed"
	if &tb.view()[0] != &v[0] || tb.list("team-a")[0].Name != "b" {
		t.Error("list handed out the table's records, or the view was rebuilt without a change")
	}
	// An equal record changes nothing; a different one does.
	if tb.set(e, poolRec("team-a", "b", "t", 0)) {
		t.Error("an equal record counted as a change")
	}
	if !tb.set(e, poolRec("team-a", "b", "t", 2)) || tb.list("team-a")[0].Ready != 2 {
		t.Error("an update was not stored")
	}
	if !tb.remove(e, poolRec("team-a", "b", "", 0)) || tb.remove(e, poolRec("team-a", "b", "", 0)) {
		t.Error("remove: want true once, then false")
	}
	if p, ok := tb.get("team-a", "z"); !ok || p.Name != "z" {
		t.Errorf("get team-a/z: %v %v", p, ok)
	}
	if _, ok := tb.get("team-a", "b"); ok {
		t.Error("get of a removed record")
	}
	// After a reset, the informers of the old epoch write nothing.
	if !tb.reset() || tb.reset() {
		t.Error("reset: want true (records held), then false")
	}
	if tb.set(e, poolRec("team-a", "late", "t", 0)) || tb.remove(e, poolRec("team-a", "z", "", 0)) || len(tb.list("")) != 0 {
		t.Errorf("a stale informer changed the table: %v", names(tb.list("")))
	}
	if !tb.set(tb.currentEpoch(), poolRec("team-a", "new", "t", 0)) || len(tb.list("")) != 1 {
		t.Error("the new epoch cannot write")
	}
}
