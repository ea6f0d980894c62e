package kube

import (
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// FuzzSandboxTransform feeds arbitrary Sandbox JSON through the transform
// and the state computation: whatever a CRD without validation lets a user
// store, the resolver must not panic and must never produce a pod IP that
// is not a plain, non-link-local unicast address.
func FuzzSandboxTransform(f *testing.F) {
	if seed, err := os.ReadFile("testdata/sandbox.json"); err == nil {
		f.Add(seed)
	}
	f.Add([]byte(`{"apiVersion":"agents.x-k8s.io/v1beta1","kind":"Sandbox","metadata":{"name":"a","namespace":"b","uid":"u"},"spec":{"replicas":"0"},"status":{"podIPs":[1,"::"],"conditions":[{"type":"Ready"},"x"]}}`))
	x := newTransformer(func() int64 { return 0 })
	f.Fuzz(func(t *testing.T, data []byte) {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			return
		}
		out, err := x.sandboxTransform(v1beta1)(u)
		if err != nil {
			t.Fatal(err)
		}
		rec := out.(*sandboxRecord)
		if ip := rec.podIP; ip.IsValid() && (ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.Zone() != "") {
			t.Fatalf("kept pod IP %v", ip)
		}
		e := &entry{namespace: rec.namespace, name: rec.name}
		e.views[v1beta1] = rec
		_ = e.compute()
	})
}
