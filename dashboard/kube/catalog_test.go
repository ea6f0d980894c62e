package kube

import (
	"reflect"
	"testing"

	"k8s.io/client-go/rest"
)

func TestCatalogReads(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a config: no error")
	}
	if _, err := New(Options{Config: &rest.Config{}, Namespaces: []string{"a", ""}}); err == nil {
		t.Error("New with an empty namespace name: no error")
	}
	c, err := New(Options{Config: &rest.Config{}, Namespaces: []string{"b", "a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.namespaces, []string{"a", "b"}) {
		t.Errorf("namespaces %v", c.namespaces)
	}
	if c.Synced() {
		t.Error("synced before discovery")
	}
	for _, k := range c.Kinds() {
		if k.Served() || k.Synced || k.Error != "" {
			t.Errorf("before Run: %+v", k)
		}
	}
	e := c.pools.currentEpoch()
	c.pools.set(e, poolRec("a", "pool", "python", 1))
	claim := func(ns, name, pool, template string) *record[Claim] {
		return &record[Claim]{namespace: ns, name: name, val: Claim{Namespace: ns, Name: name, WarmPool: pool, Template: template}}
	}
	ce := c.claims.currentEpoch()
	for _, r := range []*record[Claim]{
		claim("a", "from-pool", "pool", ""),
		claim("a", "unknown-pool", "other", ""),
		claim("a", "alpha", "pool", "explicit"),
		claim("b", "pool-elsewhere", "pool", ""), // pools are per namespace
	} {
		c.claims.set(ce, r)
	}
	got := map[string]string{}
	for _, cl := range c.Claims("") {
		got[cl.Namespace+"/"+cl.Name] = cl.Template
	}
	want := map[string]string{"a/alpha": "explicit", "a/from-pool": "python", "a/unknown-pool": "", "b/pool-elsewhere": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("claim templates %v, want %v", got, want)
	}

	// Changes coalesce: many signals, one pending.
	for range 5 {
		c.signal()
	}
	<-c.Changes()
	select {
	case <-c.Changes():
		t.Error("a second signal was pending")
	default:
	}
}
