package static

import (
	"testing"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// FuzzParse: any routes document either fails or yields a table whose
// running entries all carry a pod address.
func FuzzParse(f *testing.F) {
	f.Add([]byte("sandboxes:\n  - {name: a, podIP: 10.0.0.1}\n"))
	f.Add([]byte("sandboxes: [{name: b, state: suspended, uid: x}]"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := parse(data)
		if err != nil {
			return
		}
		for k, r := range tab.byName {
			if r.State == resolver.StateRunning && !r.PodIP.IsValid() {
				t.Fatalf("%v running without pod IP", k)
			}
		}
	})
}
