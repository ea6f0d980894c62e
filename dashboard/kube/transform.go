package kube

import (
	"fmt"
	"math"
	"time"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
)

// Bounds of a record: an object may carry anything its CRD preserves, but
// its record stays small.
const (
	// MaxContainers is how many containers of a template are kept.
	MaxContainers = 16
	// MaxPorts is how many ports of a container are kept.
	MaxPorts = 16
	// maxString bounds every string kept (an image reference, a port
	// name, a reason); a longer one is cut.
	maxString = 512
)

// record is what an informer stores: a kind's value and the key
// client-go's key functions read.
type record[T any] struct {
	namespace, name string
	val             T
}

// GetObjectMeta lets client-go's key functions name the record.
func (r *record[T]) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: r.namespace, Name: r.name}
}

// transform returns the informer transform that reduces an object to its
// record with of.
func transform[T any](of func(*unstructured.Unstructured) T) cache.TransformFunc {
	return func(obj any) (any, error) {
		switch o := obj.(type) {
		case *unstructured.Unstructured:
			return &record[T]{namespace: intern(o.GetNamespace()), name: o.GetName(), val: of(o)}, nil
		case *record[T], cache.DeletedFinalStateUnknown:
			return obj, nil // already transformed (relist, tombstone)
		}
		return nil, fmt.Errorf("dashboard catalog transform: unexpected %T", obj)
	}
}

// templateOf reads a SandboxTemplate (v1beta1 and v1alpha1 alike): the
// containers of spec.podTemplate.spec.
func templateOf(u *unstructured.Unstructured) Template {
	t := Template{Namespace: intern(u.GetNamespace()), Name: u.GetName(), Created: created(u)}
	containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "podTemplate", "spec", "containers")
	for _, c := range containers {
		if len(t.Containers) == MaxContainers {
			break
		}
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		ct := Container{Name: str(m["name"]), Image: intern(str(m["image"]))}
		ports, _ := m["ports"].([]any)
		for _, p := range ports {
			if len(ct.Ports) == MaxPorts {
				break
			}
			pm, ok := p.(map[string]any)
			if !ok {
				continue
			}
			n, ok := int32Of(pm["containerPort"])
			if !ok || n <= 0 || n > 65535 {
				continue
			}
			proto := str(pm["protocol"])
			if proto == "" {
				proto = "TCP"
			}
			ct.Ports = append(ct.Ports, Port{Name: str(pm["name"]), Number: n, Protocol: intern(proto)})
		}
		t.Containers = append(t.Containers, ct)
	}
	return t
}

// warmPoolOf reads a SandboxWarmPool (v1beta1 and v1alpha1 alike).
func warmPoolOf(u *unstructured.Unstructured) WarmPool {
	p := WarmPool{Namespace: intern(u.GetNamespace()), Name: u.GetName(), Created: created(u), Desired: 1}
	spec, _ := u.Object["spec"].(map[string]any)
	if n, ok := int32Of(spec["replicas"]); ok && n >= 0 {
		p.Desired = n
	}
	p.Template = refName(spec, "sandboxTemplateRef")
	status, _ := u.Object["status"].(map[string]any)
	if n, ok := int32Of(status["replicas"]); ok && n >= 0 {
		p.Replicas = n
	}
	if n, ok := int32Of(status["readyReplicas"]); ok && n >= 0 {
		p.Ready = n
	}
	return p
}

// claimOf reads a SandboxClaim: v1beta1 names its warm pool in
// spec.warmPoolRef.name; v1alpha1 named its template in
// spec.sandboxTemplateRef.name and a pool, or "none" or "default", in
// spec.warmpool. Whatever version the object was read through, it has
// only its own version's fields, so both are read.
func claimOf(u *unstructured.Unstructured) Claim {
	c := Claim{
		Namespace: intern(u.GetNamespace()), Name: u.GetName(), Created: created(u),
		Deleting: u.GetDeletionTimestamp() != nil,
	}
	spec, _ := u.Object["spec"].(map[string]any)
	c.WarmPool = refName(spec, "warmPoolRef")
	if c.WarmPool == "" {
		if p := str(spec["warmpool"]); p != "none" && p != "default" {
			c.WarmPool = intern(p)
		}
	}
	c.Template = refName(spec, "sandboxTemplateRef")
	if s, _, _ := unstructured.NestedString(spec, "lifecycle", "shutdownTime"); s != "" {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			c.Expires = t.UTC()
		}
	}
	status, _ := u.Object["status"].(map[string]any)
	if s, _, _ := unstructured.NestedString(status, "sandbox", "name"); s != "" {
		c.Sandbox = clip(s)
	}
	conds, _ := status["conditions"].([]any)
	for _, cond := range conds {
		m, ok := cond.(map[string]any)
		if !ok || m["type"] != "Ready" {
			continue
		}
		c.Ready = m["status"] == "True"
		c.Reason = intern(str(m["reason"]))
		break
	}
	return c
}

// refName reads spec.<field>.name, interned: many objects name the same
// few templates and pools.
func refName(spec map[string]any, field string) string {
	ref, _ := spec[field].(map[string]any)
	return intern(str(ref["name"]))
}

// str returns v if it is a string, clipped; else "".
func str(v any) string {
	s, _ := v.(string)
	return clip(s)
}

func clip(s string) string {
	if len(s) > maxString {
		return s[:maxString]
	}
	return s
}

// int32Of reads a JSON number (int64 as decoded, or float64) that fits in
// an int32.
func int32Of(v any) (int32, bool) {
	switch n := v.(type) {
	case int64:
		if n >= math.MinInt32 && n <= math.MaxInt32 {
			return int32(n), true
		}
	case float64:
		if n == math.Trunc(n) && n >= math.MinInt32 && n <= math.MaxInt32 {
			return int32(n), true
		}
	}
	return 0, false
}

// intern returns the canonical copy of a string that many records repeat
// (namespaces, references, images); the unique package drops those no
// record uses any more.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// created is the object's creation time, in UTC.
func created(u *unstructured.Unstructured) time.Time {
	t := u.GetCreationTimestamp().Time
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}
