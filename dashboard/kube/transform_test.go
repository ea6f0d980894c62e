package kube

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
)

var createdAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// obj builds an object as the dynamic client decodes it (integers as
// int64).
func obj(kind, version, ns, name string, spec, status map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/" + version,
		"kind":       kind,
		"metadata": map[string]any{
			"namespace": ns, "name": name, "uid": "u-" + name, "resourceVersion": "7",
			"creationTimestamp": createdAt.Format(time.RFC3339),
			"annotations":       map[string]any{"big": strings.Repeat("x", 10000)},
			"managedFields":     []any{map[string]any{"manager": "kubectl"}},
		},
	}}
	if spec != nil {
		u.Object["spec"] = spec
	}
	if status != nil {
		u.Object["status"] = status
	}
	return u
}

func TestTemplateOf(t *testing.T) {
	many := make([]any, MaxContainers+3)
	for i := range many {
		many[i] = map[string]any{"name": "c", "image": "img"}
	}
	manyPorts := make([]any, MaxPorts+5)
	for i := range manyPorts {
		manyPorts[i] = map[string]any{"containerPort": int64(1000 + i)}
	}
	tests := []struct {
		name string
		spec map[string]any
		want []Container
	}{
		{"no spec", nil, nil},
		{"no pod template", map[string]any{"networkPolicyManagement": "Managed"}, nil},
		{"containers, ports and defaults", map[string]any{"podTemplate": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{"a": "b"}},
			"spec": map[string]any{
				"containers": []any{
					map[string]any{"name": "runtime", "image": "registry.example/python:3.13", "env": []any{map[string]any{"name": "X", "value": "y"}},
						"ports": []any{
							map[string]any{"name": "http", "containerPort": int64(8888)},
							map[string]any{"containerPort": float64(9000), "protocol": "UDP"},
							map[string]any{"name": "bad", "containerPort": int64(70000)},
							map[string]any{"name": "zero", "containerPort": int64(0)},
							map[string]any{"name": "str", "containerPort": "80"},
							"not a map",
						}},
					"not a map",
					map[string]any{"name": "sidecar", "image": int64(3)},
				},
				"initContainers": []any{map[string]any{"name": "init", "image": "busybox"}},
			},
		}}, []Container{
			{Name: "runtime", Image: "registry.example/python:3.13", Ports: []Port{{Name: "http", Number: 8888, Protocol: "TCP"}, {Number: 9000, Protocol: "UDP"}}},
			{Name: "sidecar"},
		}},
		{"bounded", map[string]any{"podTemplate": map[string]any{"spec": map[string]any{"containers": many}}}, func() []Container {
			out := make([]Container, MaxContainers)
			for i := range out {
				out[i] = Container{Name: "c", Image: "img"}
			}
			return out
		}()},
		{"bounded ports and strings", map[string]any{"podTemplate": map[string]any{"spec": map[string]any{"containers": []any{
			map[string]any{"name": "c", "image": strings.Repeat("i", 5000), "ports": manyPorts},
		}}}}, func() []Container {
			c := Container{Name: "c", Image: strings.Repeat("i", maxString)}
			for i := range MaxPorts {
				c.Ports = append(c.Ports, Port{Number: int32(1000 + i), Protocol: "TCP"})
			}
			return []Container{c}
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := templateOf(obj("SandboxTemplate", "v1beta1", "team-a", "python", tt.spec, nil))
			want := Template{Namespace: "team-a", Name: "python", Created: createdAt, Containers: tt.want}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestWarmPoolOf(t *testing.T) {
	tests := []struct {
		name         string
		spec, status map[string]any
		want         WarmPool
	}{
		{"empty: replicas default 1", nil, nil, WarmPool{Desired: 1}},
		{"full", map[string]any{"replicas": int64(5), "sandboxTemplateRef": map[string]any{"name": "python"}, "updateStrategy": map[string]any{"type": "Recreate"}},
			map[string]any{"replicas": int64(4), "readyReplicas": int64(3), "selector": "x=y", "observedGeneration": int64(2)},
			WarmPool{Template: "python", Desired: 5, Replicas: 4, Ready: 3}},
		{"zero desired", map[string]any{"replicas": int64(0)}, nil, WarmPool{Desired: 0}},
		{"float numbers", map[string]any{"replicas": float64(2)}, map[string]any{"readyReplicas": float64(1)}, WarmPool{Desired: 2, Ready: 1}},
		{"invalid numbers ignored", map[string]any{"replicas": int64(-1), "sandboxTemplateRef": "python"},
			map[string]any{"replicas": int64(1) << 40, "readyReplicas": 2.5},
			WarmPool{Desired: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := warmPoolOf(obj("SandboxWarmPool", "v1beta1", "team-a", "pool", tt.spec, tt.status))
			want := tt.want
			want.Namespace, want.Name, want.Created = "team-a", "pool", createdAt
			if got != want {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestClaimOf(t *testing.T) {
	expires := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name, version string
		spec, status  map[string]any
		deleting      bool
		want          Claim
	}{
		{"new v1beta1 claim", "v1beta1", map[string]any{"warmPoolRef": map[string]any{"name": "python-pool"}}, nil, false,
			Claim{WarmPool: "python-pool"}},
		{"bound and ready", "v1beta1",
			map[string]any{"warmPoolRef": map[string]any{"name": "python-pool"}, "lifecycle": map[string]any{"shutdownTime": expires.Format(time.RFC3339), "shutdownPolicy": "Delete"}},
			map[string]any{"sandbox": map[string]any{"name": "python-pool-x7k2", "podIPs": []any{"10.0.0.5"}}, "conditions": []any{
				map[string]any{"type": "Other", "status": "True", "reason": "No"},
				map[string]any{"type": "Ready", "status": "True", "reason": "SandboxReady", "message": "ok"},
			}}, false,
			Claim{WarmPool: "python-pool", Sandbox: "python-pool-x7k2", Ready: true, Reason: "SandboxReady", Expires: expires}},
		{"not ready, deleting, bad time", "v1beta1",
			map[string]any{"warmPoolRef": map[string]any{"name": "p"}, "lifecycle": map[string]any{"shutdownTime": "tomorrow"}},
			map[string]any{"conditions": []any{"junk", map[string]any{"type": "Ready", "status": "False", "reason": "ClaimExpired"}}}, true,
			Claim{WarmPool: "p", Reason: "ClaimExpired", Deleting: true}},
		{"v1alpha1 template, default pool", "v1alpha1", map[string]any{"sandboxTemplateRef": map[string]any{"name": "python"}, "warmpool": "default"}, nil, false,
			Claim{Template: "python"}},
		{"v1alpha1 named pool", "v1alpha1", map[string]any{"sandboxTemplateRef": map[string]any{"name": "python"}, "warmpool": "fast"}, nil, false,
			Claim{Template: "python", WarmPool: "fast"}},
		{"v1alpha1 no pool", "v1alpha1", map[string]any{"sandboxTemplateRef": map[string]any{"name": "python"}, "warmpool": "none"}, nil, false,
			Claim{Template: "python"}},
		{"garbage", "v1beta1", map[string]any{"warmPoolRef": "x"}, map[string]any{"sandbox": "y", "conditions": "z"}, false, Claim{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := obj("SandboxClaim", tt.version, "team-a", "mine", tt.spec, tt.status)
			if tt.deleting {
				u.Object["metadata"].(map[string]any)["deletionTimestamp"] = createdAt.Format(time.RFC3339)
			}
			got := claimOf(u)
			want := tt.want
			want.Namespace, want.Name, want.Created = "team-a", "mine", createdAt
			if got != want {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// The informer transform: objects become records keyed like the object;
// records and tombstones pass through; anything else is an error.
func TestTransform(t *testing.T) {
	f := transform(warmPoolOf)
	out, err := f(obj("SandboxWarmPool", "v1beta1", "team-a", "pool", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := out.(*record[WarmPool])
	if !ok || r.namespace != "team-a" || r.name != "pool" || r.val.Name != "pool" {
		t.Fatalf("transform gave %#v", out)
	}
	if k, err := cache.MetaNamespaceKeyFunc(r); err != nil || k != "team-a/pool" {
		t.Errorf("key %q %v", k, err)
	}
	if again, err := f(r); err != nil || again != r {
		t.Errorf("record again: %v %v", again, err)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "team-a/pool", Obj: r}
	if got, err := f(tomb); err != nil || got != tomb {
		t.Errorf("tombstone: %v %v", got, err)
	}
	if _, err := f("nope"); err == nil {
		t.Error("a string transformed without error")
	}
}
