package kube

import (
	"net/netip"

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
	podIP    netip.Addr
	version  apiVersion
	protocol resolver.Protocol
	// suspend: the spec asks for no pod (operatingMode Suspended or
	// replicas 0).
	suspend  bool
	deleting bool
	ready    condition
	finished condition
}

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
	ip         netip.Addr
	// h2cPorts are the declared container ports named as HTTP/2 (grpc*,
	// h2c*, http2*), at most resolver.MaxPortHints.
	h2cPorts [resolver.MaxPortHints]uint16
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
