package xds

import (
	"testing"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// FuzzResourceNames: whatever name a client asks for, each kind either
// refuses it or reads a target made of valid labels and a port, and
// builds a resource without failing.
func FuzzResourceNames(f *testing.F) {
	for _, s := range []string{"sandboxes/a.ns.example.com", "sandboxes/3000-a.ns.example.com:443", "sandboxes", "sandboxes/",
		"a.ns.example.com", "sandbox|ns|a|8080", "sandbox|ns|a|0", "sandbox||a|1", "sandbox|ns|a|1|2", "sandboxes/[::1]:80"} {
		f.Add(s)
	}
	n := &namer{domains: []string{"example.com"}, defaultPort: 8888}
	kinds := []*kind{n.virtualHostKind(), n.grpcListenerKind(), n.grpcClusterKind(), n.grpcEndpointsKind()}
	f.Fuzz(func(t *testing.T, name string) {
		for _, k := range kinds {
			tg, valid := k.target(name)
			if !valid {
				continue
			}
			if tg.ok && (!resolver.IsDNSLabel(tg.key.Namespace) || !resolver.IsDNSLabel(tg.key.Name) || tg.port == 0) {
				t.Fatalf("%s: %q read as %+v", k.typeURL, name, tg)
			}
			if _, msg := k.build(name, tg, resolver.Result{}, routerSet{}); msg == nil {
				t.Fatalf("%s: %q is valid but builds nothing", k.typeURL, name)
			}
		}
	})
}
