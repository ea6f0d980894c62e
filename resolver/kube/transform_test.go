package kube

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unique"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func fixture(t *testing.T, path string, mutate func(string) string) []byte {
	t.Helper()
	s, err := readFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s = strings.NewReplacer("@NAME@", "sb1", "@NS@", "team-a", "@UID@", "uid-1", "@IP@", "10.1.2.3").Replace(s)
	if mutate != nil {
		s = mutate(s)
	}
	return []byte(s)
}

func decodeSandbox(t *testing.T, data []byte) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSandboxTransform(t *testing.T) {
	x := newTransformer(func() int64 { return 42 })
	tests := []struct {
		name   string
		mutate func(string) string
		check  func(t *testing.T, r *sandboxRecord)
	}{
		{"ready", nil, func(t *testing.T, r *sandboxRecord) {
			if r.namespace != "team-a" || r.name != "sb1" || r.uid != "uid-1" || r.resourceVersion != 123460 ||
				r.ready != condTrue || r.podIP != netip.MustParseAddr("10.1.2.3") || r.suspended() || r.deleting || r.receivedAt != 42 ||
				r.flags != 0 {
				t.Fatalf("%+v", r)
			}
		}},
		{"suspended by operatingMode", func(s string) string {
			return strings.Replace(s, `"operatingMode": "Running"`, `"operatingMode": "Suspended"`, 1)
		}, func(t *testing.T, r *sandboxRecord) {
			if !r.suspended() || r.flags&(modeSuspended|replicasZero) != modeSuspended {
				t.Fatalf("flags %016b", r.flags)
			}
		}},
		{"suspended by replicas", func(s string) string {
			return strings.Replace(s, `"operatingMode": "Running"`, `"replicas": 0`, 1)
		}, func(t *testing.T, r *sandboxRecord) {
			if !r.suspended() || r.flags&(modeSuspended|replicasZero) != replicasZero {
				t.Fatalf("flags %016b", r.flags)
			}
		}},
		{"suspended by both fields", func(s string) string {
			return strings.Replace(s, `"operatingMode": "Running"`, `"operatingMode": "Suspended", "replicas": 0`, 1)
		}, func(t *testing.T, r *sandboxRecord) {
			if !r.suspended() || r.flags&(modeSuspended|replicasZero) != modeSuspended|replicasZero {
				t.Fatalf("flags %016b", r.flags)
			}
		}},
		{"replicas 1 runs", func(s string) string {
			return strings.Replace(s, `"operatingMode": "Running"`, `"replicas": 1`, 1)
		}, func(t *testing.T, r *sandboxRecord) {
			if r.suspended() || r.flags != 0 {
				t.Fatalf("flags %016b", r.flags)
			}
		}},
		{"hostile pod IP", func(s string) string {
			return strings.Replace(s, `"podIPs": [`+"\n"+`   "10.1.2.3"`, `"podIPs": [`+"\n"+`   "fe80::1%eth0"`, 1)
		}, func(t *testing.T, r *sandboxRecord) {
			if r.podIP.IsValid() {
				t.Fatalf("accepted %v", r.podIP)
			}
		}},
		{"metadata address as pod IP", func(s string) string {
			return strings.Replace(s, `"podIPs": [`+"\n"+`   "10.1.2.3"`, `"podIPs": [`+"\n"+`   "169.254.169.254"`, 1)
		}, func(t *testing.T, r *sandboxRecord) {
			if r.podIP.IsValid() {
				t.Fatalf("accepted %v", r.podIP)
			}
		}},
		{"finished and deleting", func(s string) string {
			s = strings.Replace(s, `"type": "Suspended"`, `"type": "Finished"`, 1)
			s = strings.Replace(s, `"status": "False"`, `"status": "True"`, 1)
			return strings.Replace(s, `"generation": 3,`, `"generation": 3, "deletionTimestamp": "2026-12-01T00:00:00Z",`, 1)
		}, func(t *testing.T, r *sandboxRecord) {
			if r.finished != condTrue || !r.deleting {
				t.Fatalf("%+v", r)
			}
		}},
		{"protocol annotation", func(s string) string {
			return strings.Replace(s, `"sandbox-router.dev/protocol": "auto"`, `"sandbox-router.dev/protocol": "h2c"`, 1)
		}, func(t *testing.T, r *sandboxRecord) {
			if r.protocol != resolver.ProtocolH2C {
				t.Fatalf("protocol %v", r.protocol)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := x.sandboxTransform(v1beta1)(decodeSandbox(t, fixture(t, "testdata/sandbox.json", tt.mutate)))
			if err != nil {
				t.Fatal(err)
			}
			rec := out.(*sandboxRecord)
			tt.check(t, rec)
			// Transforms must be idempotent: a relist may hand back a
			// record.
			if again, err := x.sandboxTransform(v1beta1)(rec); err != nil || again != any(rec) {
				t.Fatalf("second transform: %v %v", again, err)
			}
		})
	}
	if _, err := x.sandboxTransform(v1beta1)(&corev1.Pod{}); err == nil {
		t.Fatal("a Pod went through the Sandbox transform")
	}
}

// TestLifecycleAnnotations walks the annotation syntax: what is taken,
// and what is ignored as invalid.
func TestLifecycleAnnotations(t *testing.T) {
	x := newTransformer(func() int64 { return 0 })
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UTC()
	}
	const idle, hold, activity, release = IdleTimeoutAnnotation, HoldTimeoutAnnotation, LastActivityAnnotation, ReleaseAnnotation
	tests := []struct {
		name        string
		annotations map[string]string
		want        resolver.Lifecycle // Revision aside
		invalid     sandboxFlags
	}{
		{"absent", nil, resolver.Lifecycle{}, 0},
		{"idle 15m", map[string]string{idle: "15m"}, resolver.Lifecycle{IdleTimeout: 15 * time.Minute, IdleTimeoutSet: true}, 0},
		{"idle compound", map[string]string{idle: "1h30m"}, resolver.Lifecycle{IdleTimeout: 90 * time.Minute, IdleTimeoutSet: true}, 0},
		{"idle fractional", map[string]string{idle: "1.5s"}, resolver.Lifecycle{IdleTimeout: 1500 * time.Millisecond, IdleTimeoutSet: true}, 0},
		{"idle 0 never suspends", map[string]string{idle: "0"}, resolver.Lifecycle{IdleTimeoutSet: true}, 0},
		{"idle 0s never suspends", map[string]string{idle: "0s"}, resolver.Lifecycle{IdleTimeoutSet: true}, 0},
		{"idle at the 30-day limit", map[string]string{idle: "720h"}, resolver.Lifecycle{IdleTimeout: 30 * 24 * time.Hour, IdleTimeoutSet: true}, 0},
		{"idle sub-millisecond rounds up", map[string]string{idle: "1500us"}, resolver.Lifecycle{IdleTimeout: 2 * time.Millisecond, IdleTimeoutSet: true}, 0},
		{"idle too large", map[string]string{idle: "720h0m0.001s"}, resolver.Lifecycle{}, idleInvalid},
		{"idle far too large", map[string]string{idle: "100000h"}, resolver.Lifecycle{}, idleInvalid},
		{"idle overflows", map[string]string{idle: "9999999999h"}, resolver.Lifecycle{}, idleInvalid},
		{"idle negative", map[string]string{idle: "-1s"}, resolver.Lifecycle{}, idleInvalid},
		{"idle without unit", map[string]string{idle: "300"}, resolver.Lifecycle{}, idleInvalid},
		{"idle empty", map[string]string{idle: ""}, resolver.Lifecycle{}, idleInvalid},
		{"idle junk", map[string]string{idle: "soon"}, resolver.Lifecycle{}, idleInvalid},
		{"idle with spaces", map[string]string{idle: " 5m"}, resolver.Lifecycle{}, idleInvalid},
		{"hold 30s", map[string]string{hold: "30s"}, resolver.Lifecycle{HoldTimeout: 30 * time.Second, HoldTimeoutSet: true}, 0},
		{"hold at the 1-hour limit", map[string]string{hold: "1h"}, resolver.Lifecycle{HoldTimeout: time.Hour, HoldTimeoutSet: true}, 0},
		{"hold 1ns rounds up, never to 0", map[string]string{hold: "1ns"}, resolver.Lifecycle{HoldTimeout: time.Millisecond, HoldTimeoutSet: true}, 0},
		{"hold 0 is invalid", map[string]string{hold: "0"}, resolver.Lifecycle{}, holdInvalid},
		{"hold 0s is invalid", map[string]string{hold: "0s"}, resolver.Lifecycle{}, holdInvalid},
		{"hold too large", map[string]string{hold: "1h0m1s"}, resolver.Lifecycle{}, holdInvalid},
		{"hold negative", map[string]string{hold: "-30s"}, resolver.Lifecycle{}, holdInvalid},
		{"hold junk", map[string]string{hold: "30 seconds"}, resolver.Lifecycle{}, holdInvalid},
		{"activity RFC 3339", map[string]string{activity: "2026-11-30T10:00:03Z"},
			resolver.Lifecycle{LastActivity: at("2026-11-30T10:00:03Z")}, 0},
		{"activity RFC 3339 nano, exact", map[string]string{activity: "2026-11-30T10:00:03.123456789Z"},
			resolver.Lifecycle{LastActivity: at("2026-11-30T10:00:03.123456789Z")}, 0},
		{"activity with an offset", map[string]string{activity: "2026-11-30T12:00:03.5+02:00"},
			resolver.Lifecycle{LastActivity: at("2026-11-30T10:00:03.5Z")}, 0},
		{"activity at the Unix epoch is not absent", map[string]string{activity: "1970-01-01T00:00:00Z"},
			resolver.Lifecycle{LastActivity: time.Unix(0, 0).UTC()}, 0},
		{"activity without a zone", map[string]string{activity: "2026-11-30T10:00:03"}, resolver.Lifecycle{}, activityInvalid},
		{"activity with a space", map[string]string{activity: "2026-11-30 10:00:03Z"}, resolver.Lifecycle{}, activityInvalid},
		{"activity as Unix seconds", map[string]string{activity: "1796032803"}, resolver.Lifecycle{}, activityInvalid},
		{"activity junk", map[string]string{activity: "yesterday"}, resolver.Lifecycle{}, activityInvalid},
		{"activity before 1678", map[string]string{activity: "1600-01-01T00:00:00Z"}, resolver.Lifecycle{}, activityInvalid},
		{"activity after 2262", map[string]string{activity: "9999-12-31T23:59:59Z"}, resolver.Lifecycle{}, activityInvalid},
		{"all three", map[string]string{idle: "10m", hold: "45s", activity: "2026-11-30T10:00:03Z"},
			resolver.Lifecycle{IdleTimeout: 10 * time.Minute, IdleTimeoutSet: true, HoldTimeout: 45 * time.Second, HoldTimeoutSet: true,
				LastActivity: at("2026-11-30T10:00:03Z")}, 0},
		{"one invalid leaves the others", map[string]string{idle: "10m", hold: "2h", activity: "2026-11-30T10:00:03Z"},
			resolver.Lifecycle{IdleTimeout: 10 * time.Minute, IdleTimeoutSet: true, LastActivity: at("2026-11-30T10:00:03Z")}, holdInvalid},
		{"all invalid", map[string]string{idle: "x", hold: "y", activity: "z", release: "soon"}, resolver.Lifecycle{}, invalidAnnotations},
		{"release on ready", map[string]string{release: "ready"}, resolver.Lifecycle{Release: resolver.ReleaseOnReady}, 0},
		{"release on probe", map[string]string{release: "probe"}, resolver.Lifecycle{Release: resolver.ReleaseOnProbe}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := decodeSandbox(t, fixture(t, "testdata/sandbox.json", nil))
			annotations := u.GetAnnotations()
			for k, v := range tt.annotations {
				annotations[k] = v
			}
			u.SetAnnotations(annotations)
			out, err := x.sandboxTransform(v1beta1)(u)
			if err != nil {
				t.Fatal(err)
			}
			rec := out.(*sandboxRecord)
			got := rec.lifecycle()
			if got.Revision != "123460" {
				t.Fatalf("revision %q", got.Revision)
			}
			got.Revision = ""
			if got != tt.want || !got.LastActivity.Equal(tt.want.LastActivity) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if bad := rec.flags & invalidAnnotations; bad != tt.invalid {
				t.Fatalf("invalid flags %08b, want %08b", bad, tt.invalid)
			}
			if rec.protocol != resolver.ProtocolAuto || rec.suspended() {
				t.Fatalf("lifecycle annotations changed the rest: %+v", rec)
			}
		})
	}
}

// TestSandboxRecordSize keeps the record in its allocation size class:
// the cache's memory is mostly records.
func TestSandboxRecordSize(t *testing.T) {
	if size := unsafe.Sizeof(sandboxRecord{}); size > 128 {
		t.Fatalf("sandboxRecord is %d bytes, over its 128-byte size class", size)
	}
}

func TestPodTransform(t *testing.T) {
	x := newTransformer(func() int64 { return 7 })
	decode := func(mutate func(string) string) *podRecord {
		var p corev1.Pod
		if err := json.Unmarshal(fixture(t, "testdata/pod.json", mutate), &p); err != nil {
			t.Fatal(err)
		}
		out, err := x.podTransform(&p)
		if err != nil {
			t.Fatal(err)
		}
		return out.(*podRecord)
	}
	r := decode(nil)
	if r.owner != "sb1" || r.ownerUID != "uid-1" || !r.ready || r.ip != netip.MustParseAddr("10.1.2.3") ||
		r.warmPool || r.uid != "" || r.facts().h2cPorts != [resolver.MaxPortHints]uint16{50051} ||
		r.facts().readiness != unique.Make(resolver.Readiness{Checks: [resolver.MaxReadinessChecks]resolver.Check{{Kind: resolver.CheckHTTP, Port: 8888, TimeoutSeconds: 1, Path: "/healthz"}}}) {
		t.Fatalf("%+v", r)
	}
	if r := decode(func(s string) string { return strings.Replace(s, `"phase": "Running"`, `"phase": "Pending"`, 1) }); r.ready {
		t.Fatal("a pending pod is ready")
	}
	if r := decode(func(s string) string { return strings.Replace(s, `"phase": "Running"`, `"phase": "Failed"`, 1) }); r.live() {
		t.Fatal("a failed pod is live")
	}
	if r := decode(func(s string) string { return strings.Replace(s, `"controller": true`, `"controller": false`, 1) }); r.owner != "" {
		t.Fatal("a non-controller owner reference was taken")
	}
	warm := decode(func(s string) string {
		return strings.Replace(s, `"app": "agent-sandbox"`, `"agents.x-k8s.io/warm-pool-sandbox": "python"`, 1)
	})
	if !warm.warmPool || warm.uid != "uid-1-pod" {
		t.Fatalf("warm pod: %+v", warm)
	}
}

func TestDetails(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "a", "namespace": "ns", "uid": "u1",
			"creationTimestamp": "2026-12-01T10:00:00Z",
			"labels":            map[string]any{"tier": "web", "app": "agent", "bad\x1ekey": "x"}},
		"spec": map[string]any{"podTemplate": map[string]any{"spec": map[string]any{"containers": []any{
			map[string]any{"name": "main", "ports": []any{
				map[string]any{"name": "http", "containerPort": int64(8888)},
				map[string]any{"name": "grpc", "containerPort": int64(9001), "protocol": "TCP"},
				map[string]any{"containerPort": int64(0)}, // invalid: left out
			}},
		}}}},
		"status": map[string]any{"conditions": []any{
			map[string]any{"type": "Ready", "status": "True", "reason": "DependenciesReady", "message": "left out"},
		}},
	}}
	rec := (&transformer{now: func() int64 { return 0 }}).sandbox(v1beta1, u)
	got := rec.details()
	want := resolver.Details{
		Created:    time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		Labels:     []resolver.Label{{Key: "app", Value: "agent"}, {Key: "tier", Value: "web"}},
		Conditions: []resolver.Condition{{Type: "Ready", Status: "True", Reason: "DependenciesReady"}},
		Ports:      []resolver.Port{{Container: "main", Name: "http", Number: 8888}, {Container: "main", Name: "grpc", Number: 9001, Protocol: "TCP"}},
		Cut:        true, // the key with a separator in it
	}
	if !got.Created.Equal(want.Created) {
		t.Errorf("created %v, want %v", got.Created, want.Created)
	}
	got.Created = want.Created
	if !reflect.DeepEqual(got, want) {
		t.Errorf("details\n got %+v\nwant %+v", got, want)
	}
	// Two sandboxes with the same labels, conditions and ports share one
	// interned copy.
	u2 := u.DeepCopy()
	u2.SetName("b")
	u2.SetLabels(map[string]string{"tier": "web", "app": "agent", "bad\x1ekey": "x"})
	if rec2 := (&transformer{now: func() int64 { return 0 }}).sandbox(v1beta1, u2); rec2.meta != rec.meta {
		t.Error("equal metadata not shared")
	}
}
