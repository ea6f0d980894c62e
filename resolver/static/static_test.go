package static

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

const uid1 = "0b3c2e6a-1111-4222-8333-444455556666"

func TestLookup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	os.WriteFile(path, []byte(`
sandboxes:
  - {name: a, podIP: 10.0.0.1, uid: `+uid1+`}
  - {name: b, namespace: team, state: suspended}
  - {name: c, podIP: "::ffff:10.0.0.3", protocol: h2c}
`), 0o600)
	r, err := New(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  resolver.Key
		want resolver.Result
	}{
		{resolver.Key{Namespace: "default", Name: "a"}, resolver.Result{State: resolver.StateRunning, Namespace: "default", Name: "a", UID: uid1, PodIP: netip.MustParseAddr("10.0.0.1")}},
		{resolver.Key{UID: uid1}, resolver.Result{State: resolver.StateRunning, Namespace: "default", Name: "a", UID: uid1, PodIP: netip.MustParseAddr("10.0.0.1")}},
		{resolver.Key{Namespace: "other", UID: uid1}, resolver.Result{}},
		{resolver.Key{Namespace: "team", Name: "b"}, resolver.Result{State: resolver.StateSuspended, Namespace: "team", Name: "b"}},
		{resolver.Key{Namespace: "default", Name: "c"}, resolver.Result{State: resolver.StateRunning, Namespace: "default", Name: "c", PodIP: netip.MustParseAddr("10.0.0.3"), Protocol: resolver.ProtocolH2C}},
		{resolver.Key{Namespace: "default", Name: "zzz"}, resolver.Result{}},
	}
	for _, tt := range tests {
		if got := r.Lookup(tt.key); got != tt.want {
			t.Errorf("Lookup(%+v) = %+v, want %+v", tt.key, got, tt.want)
		}
	}
	if a := testing.AllocsPerRun(100, func() { r.Lookup(resolver.Key{Namespace: "default", Name: "a"}) }); a != 0 {
		t.Errorf("Lookup allocates %.0f", a)
	}
}

func TestParseErrors(t *testing.T) {
	tests := map[string]string{
		"sandboxes:\n  - {podIP: 10.0.0.1}\n":                                        "name is required",
		"sandboxes:\n  - {name: a, state: dozing}\n":                                 "unknown state",
		"sandboxes:\n  - {name: a}\n":                                                "valid podIP",
		"sandboxes:\n  - {name: a, podIP: 1.2.3.4, protocol: spdy}\n":                "unknown protocol",
		"sandboxes:\n  - {name: a, podIP: 1.2.3.4, color: red}\n":                    "field color not found",
		"sandboxes:\n  - {name: a, podIP: 1.2.3.4}\n  - {name: a, podIP: 1.2.3.5}\n": "duplicate sandbox",
	}
	for doc, want := range tests {
		if _, err := parse([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parse(%q) = %v, want %q", doc, err, want)
		}
	}
}

func TestReloadOnChangeKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.yaml")
	write := func(s string) {
		tmp := filepath.Join(dir, ".tmp")
		os.WriteFile(tmp, []byte(s), 0o600)
		os.Rename(tmp, path)
	}
	write("sandboxes:\n  - {name: a, podIP: 10.0.0.1}\n")
	r, err := New(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx) }()
	defer func() { cancel(); <-done }()

	key := resolver.Key{Namespace: "default", Name: "a"}
	waitFor := func(ip string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for r.Lookup(key).PodIP.String() != ip {
			if time.Now().After(deadline) {
				t.Fatalf("pod IP = %v, want %s", r.Lookup(key).PodIP, ip)
			}
			// The watcher may start after the first write: write again.
			write("sandboxes:\n  - {name: a, podIP: " + ip + "}\n")
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("10.0.0.2")
	write("sandboxes: [ {name: a, podIP: ") // broken: previous table stays
	write("sandboxes:\n  - {name: b, podIP: 10.0.0.9}\n  - {name: a, podIP: 10.0.0.2}\n")
	deadline := time.Now().Add(10 * time.Second)
	for r.Lookup(resolver.Key{Namespace: "default", Name: "b"}).State != resolver.StateRunning {
		if time.Now().After(deadline) {
			t.Fatal("reload after a broken file not seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.Lookup(key).PodIP.String(); got != "10.0.0.2" {
		t.Fatalf("a = %s", got)
	}
}
