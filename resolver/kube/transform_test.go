package kube

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

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
				r.ready != condTrue || r.podIP != netip.MustParseAddr("10.1.2.3") || r.suspend || r.deleting || r.receivedAt != 42 {
				t.Fatalf("%+v", r)
			}
		}},
		{"suspended by operatingMode", func(s string) string {
			return strings.Replace(s, `"operatingMode": "Running"`, `"operatingMode": "Suspended"`, 1)
		}, func(t *testing.T, r *sandboxRecord) {
			if !r.suspend {
				t.Fatal("not suspended")
			}
		}},
		{"suspended by replicas", func(s string) string {
			return strings.Replace(s, `"operatingMode": "Running"`, `"replicas": 0`, 1)
		}, func(t *testing.T, r *sandboxRecord) {
			if !r.suspend {
				t.Fatal("not suspended")
			}
		}},
		{"replicas 1 runs", func(s string) string {
			return strings.Replace(s, `"operatingMode": "Running"`, `"replicas": 1`, 1)
		}, func(t *testing.T, r *sandboxRecord) {
			if r.suspend {
				t.Fatal("suspended")
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
		r.warmPool || r.uid != "" || r.h2cPorts != [resolver.MaxPortHints]uint16{50051} {
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
