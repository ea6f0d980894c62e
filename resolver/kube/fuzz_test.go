package kube

import (
	"os"
	"strconv"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// FuzzSandboxTransform feeds arbitrary Sandbox JSON through the transform
// and the state computation: whatever a CRD without validation lets a user
// store, the resolver must not panic and must never produce a pod IP that
// is not a plain, non-link-local unicast address, nor a lifecycle policy
// outside the annotations' limits.
func FuzzSandboxTransform(f *testing.F) {
	if seed, err := os.ReadFile("testdata/sandbox.json"); err == nil {
		f.Add(seed)
	}
	f.Add([]byte(`{"apiVersion":"agents.x-k8s.io/v1beta1","kind":"Sandbox","metadata":{"name":"a","namespace":"b","uid":"u"},"spec":{"replicas":"0"},"status":{"podIPs":[1,"::"],"conditions":[{"type":"Ready"},"x"]}}`))
	f.Add([]byte(`{"apiVersion":"agents.x-k8s.io/v1beta1","kind":"Sandbox","metadata":{"name":"a","namespace":"b","uid":"u","resourceVersion":"9",` +
		`"annotations":{"sandbox-router.dev/idle-timeout":"15m","sandbox-router.dev/hold-timeout":"30s","sandbox-router.dev/last-activity":"2026-11-30T10:00:03.123456789Z"}},` +
		`"spec":{"operatingMode":"Suspended","replicas":0}}`))
	f.Add([]byte(`{"metadata":{"annotations":{"sandbox-router.dev/idle-timeout":"-1s","sandbox-router.dev/hold-timeout":"0","sandbox-router.dev/last-activity":"9999-12-31T23:59:59Z"}}}`))
	f.Add([]byte(`{"metadata":{"annotations":{"sandbox-router.dev/idle-timeout":"720h0m0.000000001s","sandbox-router.dev/hold-timeout":"1ns","sandbox-router.dev/last-activity":"1970-01-01T00:00:00+23:59"}}}`))
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
		for _, pair := range [...][2]sandboxFlags{{idleSet, idleInvalid}, {holdSet, holdInvalid}, {activitySet, activityInvalid}} {
			if rec.flags&pair[0] != 0 && rec.flags&pair[1] != 0 {
				t.Fatalf("flags %08b: an annotation both set and invalid", rec.flags)
			}
		}
		if rec.release > resolver.ReleaseOnReady || rec.release != resolver.ReleaseDefault && rec.flags&releaseInvalid != 0 {
			t.Fatalf("release %v with flags %016b", rec.release, rec.flags)
		}
		lc := rec.lifecycle()
		if lc.IdleTimeout < 0 || lc.IdleTimeout > maxIdleTimeout || lc.IdleTimeout != 0 && !lc.IdleTimeoutSet {
			t.Fatalf("idle timeout %v (set %v)", lc.IdleTimeout, lc.IdleTimeoutSet)
		}
		if lc.HoldTimeoutSet && (lc.HoldTimeout <= 0 || lc.HoldTimeout > maxHoldTimeout) || !lc.HoldTimeoutSet && lc.HoldTimeout != 0 {
			t.Fatalf("hold timeout %v (set %v)", lc.HoldTimeout, lc.HoldTimeoutSet)
		}
		if !lc.LastActivity.IsZero() && rec.flags&activitySet == 0 {
			t.Fatalf("last activity %v without its flag", lc.LastActivity)
		}
		e := &entry{namespace: rec.namespace, name: rec.name}
		e.views[v1beta1] = rec
		res := e.compute()
		_ = signature(&res, e.current(), e.candidate())
	})
}

// FuzzDetails: whatever labels, conditions and ports an object carries,
// Details gives back at most the bounds, every value within
// MaxDetailValue, and the labels it keeps exactly as they were.
func FuzzDetails(f *testing.F) {
	f.Add("app", "agent", "Ready", "True", "ok", "main", "http", int64(8888))
	f.Add("a\x1fb", "c\x1ed", "T\x1e", "", "", "", "", int64(-1))
	f.Fuzz(func(t *testing.T, key, value, ctype, cstatus, reason, container, port string, number int64) {
		labels := map[string]any{key: value, key + "2": value}
		var conds, ports []any
		for i := range 12 {
			conds = append(conds, map[string]any{"type": ctype + strconv.Itoa(i), "status": cstatus, "reason": reason})
			ports = append(ports, map[string]any{"name": port, "containerPort": number + int64(i)})
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"name": "a", "namespace": "ns", "labels": labels},
			"spec":     map[string]any{"podTemplate": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": container, "ports": ports}}}}},
			"status":   map[string]any{"conditions": conds},
		}}
		d := (&transformer{now: func() int64 { return 0 }}).sandbox(v1beta1, u).details()
		if len(d.Labels) > resolver.MaxDetailLabels || len(d.Conditions) > resolver.MaxDetailConditions || len(d.Ports) > resolver.MaxDetailPorts {
			t.Fatalf("over the bounds: %+v", d)
		}
		for _, l := range d.Labels {
			if v, ok := labels[l.Key]; !ok || v != l.Value {
				if len(l.Key) < resolver.MaxDetailValue && len(l.Value) < resolver.MaxDetailValue {
					t.Fatalf("label %q=%q was not in the object", l.Key, l.Value)
				}
			}
		}
		for _, c := range d.Conditions {
			if len(c.Type) > resolver.MaxDetailValue || len(c.Reason) > resolver.MaxDetailValue {
				t.Fatalf("condition over the value bound: %+v", c)
			}
		}
		for _, p := range d.Ports {
			if p.Number < 1 || p.Number > 65535 {
				t.Fatalf("port %d", p.Number)
			}
		}
	})
}
