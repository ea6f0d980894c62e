package sim

import (
	"fmt"
	"hash/fnv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// Group is the Sandbox API group.
	Group = "agents.x-k8s.io"
	// LabelNameHash marks the pods of a sandbox with NameHash(sandbox name)
	// (a warm-pool pod with the hash of its own name).
	LabelNameHash = "agents.x-k8s.io/sandbox-name-hash"
	// LabelWarmPool marks an unclaimed warm-pool pod with its pool's name.
	LabelWarmPool = "agents.x-k8s.io/warm-pool-sandbox"
	// AnnotationAdopt on a Sandbox names a warm-pool pod (of this sim, in
	// the sandbox's namespace) that the sandbox adopts instead of getting a
	// new pod.
	AnnotationAdopt = "sim.sandbox-router.dev/adopt"
	// NodeName is spec.nodeName of every pod the sim creates.
	NodeName = "sim-node"
	// ContainerName is the name of the pods' only container.
	ContainerName = "sandbox"
)

// NameHash is the value of LabelNameHash for a sandbox: the FNV-32a hash
// of its name as 8 lowercase hex digits.
func NameHash(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%08x", h.Sum32())
}

// sandboxView is what the sim reads from a Sandbox object.
type sandboxView struct {
	namespace, name string
	uid             types.UID
	generation      int64
	suspended       bool   // spec.operatingMode Suspended or spec.replicas 0
	suspendedBy     string // the field that suspends it, for the condition message
	deleting        bool   // metadata.deletionTimestamp is set
	finished        bool   // condition Finished is True
	adopt           string // AnnotationAdopt
}

// shouldRun reports whether the sandbox should have a running pod.
func (v sandboxView) shouldRun() bool {
	return !v.suspended && !v.deleting && !v.finished
}

// readSandbox reads both suspension fields whichever version the object
// was read through: the CRD preserves unknown spec fields, so a v1beta1
// object read as v1alpha1 keeps spec.operatingMode, and a v1alpha1 object
// read as v1beta1 keeps spec.replicas (next to the defaulted
// operatingMode: Running).
func readSandbox(u *unstructured.Unstructured) sandboxView {
	v := sandboxView{
		namespace:  u.GetNamespace(),
		name:       u.GetName(),
		uid:        u.GetUID(),
		generation: u.GetGeneration(),
		deleting:   u.GetDeletionTimestamp() != nil,
		adopt:      u.GetAnnotations()[AnnotationAdopt],
	}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	if mode, _ := spec["operatingMode"].(string); mode == "Suspended" {
		v.suspended, v.suspendedBy = true, "spec.operatingMode is Suspended"
	}
	if r, ok := spec["replicas"]; ok && isZero(r) {
		v.suspended, v.suspendedBy = true, "spec.replicas is 0"
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == "Finished" && m["status"] == "True" {
			v.finished = true
		}
	}
	return v
}

// isZero reports whether a decoded JSON number is 0.
func isZero(n any) bool {
	switch n := n.(type) {
	case int64:
		return n == 0
	case int:
		return n == 0
	case int32:
		return n == 0
	case float64:
		return n == 0
	}
	return false
}
