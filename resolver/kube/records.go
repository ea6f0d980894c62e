package kube

import (
	"net/netip"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// The records below are what the informers store after their transform.
// They hold strings taken from the decoded object (no copies) and a few
// flags; everything else of the object is garbage as soon as the transform
// returns. Records are immutable once built: an update replaces the record.

// apiVersion indexes the Sandbox versions the resolver can watch.
type apiVersion uint8

const (
	v1beta1 apiVersion = iota
	v1alpha1
	numVersions
)

var versionNames = [numVersions]string{v1beta1: "v1beta1", v1alpha1: "v1alpha1"}

func (v apiVersion) String() string { return versionNames[v] }

// condition is a Kubernetes condition status.
type condition uint8

const (
	condUnknown condition = iota
	condTrue
	condFalse
)

// sandboxRecord is one Sandbox as seen through one API version.
type sandboxRecord struct {
	namespace, name string
	uid             types.UID
	// resourceVersion orders two views of the same object (0 when it does
	// not parse as a number).
	resourceVersion uint64
	// receivedAt is when the transform ran, in monotonic nanoseconds of the
	// resolver's clock: the moment the watch event was decoded.
	receivedAt int64
	// podIP is status.podIPs[0].
	podIP netip.Addr
	// lastActivity is the last-activity annotation in Unix nanoseconds
	// (valid when flags has activitySet). Nanoseconds keep the value a
	// router wrote exactly, and cover 1678 to 2262.
	lastActivity int64
	// idleTimeout and holdTimeout are the timeout annotations in
	// milliseconds, rounded up (valid when flags has idleSet, holdSet).
	// 32 bits of milliseconds hold the 30-day idle limit (2.6e9) where
	// two int64 durations would push the record into the next size
	// class; no timeout needs sub-millisecond precision.
	idleTimeout uint32
	holdTimeout uint32
	version     apiVersion
	protocol    resolver.Protocol
	// release is the release-on annotation (ReleaseDefault when absent
	// or invalid).
	release  resolver.Release
	deleting bool
	ready    condition
	finished condition
	flags    sandboxFlags
	// created is the creationTimestamp in Unix seconds, meta what views
	// read beyond routing (Details); 16 bytes that move the record from
	// the 112-byte size class to the 128-byte one.
	created int64
	meta    unique.Handle[sandboxMeta]
}

// sandboxFlags are the one-bit facts of a sandboxRecord, packed so that
// the record stays within its 128-byte size class.
type sandboxFlags uint16

const (
	// modeSuspended: spec.operatingMode is Suspended.
	modeSuspended sandboxFlags = 1 << iota
	// replicasZero: spec.replicas is 0.
	replicasZero
	// idleSet, holdSet, activitySet: the annotation is present and valid.
	idleSet
	holdSet
	activitySet
	// idleInvalid, holdInvalid, activityInvalid: the annotation is
	// present but invalid, so it is treated as absent (kept to count each
	// bad value once, not at every update of the object).
	idleInvalid
	holdInvalid
	activityInvalid
	releaseInvalid

	invalidAnnotations = idleInvalid | holdInvalid | activityInvalid | releaseInvalid
)

// suspended reports whether the spec asks for no pod (operatingMode
// Suspended or replicas 0); flags tells which.
func (s *sandboxRecord) suspended() bool { return s.flags&(modeSuspended|replicasZero) != 0 }

// GetObjectMeta lets client-go's key functions name the record.
func (s *sandboxRecord) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: s.namespace, Name: s.name, UID: s.uid}
}

// podRecord is one pod of a sandbox, or an unclaimed warm-pool pod.
type podRecord struct {
	namespace, name string
	// uid is set for warm-pool pods only.
	uid types.UID
	// owner and ownerUID name the Sandbox that controls the pod; empty for
	// warm-pool pods.
	owner      string
	ownerUID   types.UID
	receivedAt int64
	// ip is status.podIP, set from the moment the pod has an address,
	// Ready or not.
	ip netip.Addr
	// spec is what the router reads of the pod spec, shared by the pods
	// of one template (see podSpec).
	spec     unique.Handle[podSpec]
	warmPool bool
	ready    bool
	deleting bool
	// terminal: phase Succeeded or Failed; the pod will not serve again.
	terminal bool
}

// GetObjectMeta lets client-go's key functions name the record.
func (p *podRecord) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: p.namespace, Name: p.name, UID: p.uid}
}

// live reports whether the pod can still serve or become ready.
func (p *podRecord) live() bool { return !p.deleting && !p.terminal }
