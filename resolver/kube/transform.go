package kube

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unique"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"

	"github.com/sandbox-router/sandbox-router/resolver"
)

const (
	// Group is the Sandbox API group.
	Group = "agents.x-k8s.io"
	// SandboxNameHashLabel is on every pod of a sandbox (and on warm-pool
	// pods); the Pod informer selects on its existence.
	SandboxNameHashLabel = "agents.x-k8s.io/sandbox-name-hash"
	// WarmPoolLabel marks an unclaimed warm-pool pod: reachable by its UID
	// only, never by a name.
	WarmPoolLabel = "agents.x-k8s.io/warm-pool-sandbox"
	// ProtocolAnnotation on a Sandbox forces the protocol spoken to all its
	// ports: "http1", "h2c" or "auto".
	ProtocolAnnotation = "sandbox-router.dev/protocol"
	// IdleTimeoutAnnotation on a Sandbox is how long it may go without
	// traffic before it is suspended: a Go duration ("15m", "1h30m")
	// from 0 (never suspend it for idleness) to 30 days.
	IdleTimeoutAnnotation = "sandbox-router.dev/idle-timeout"
	// HoldTimeoutAnnotation on a Sandbox bounds how long a request waits
	// for it to resume: a Go duration above 0, at most 1 hour.
	HoldTimeoutAnnotation = "sandbox-router.dev/hold-timeout"
	// LastActivityAnnotation on a Sandbox is when a router last saw
	// traffic for it, RFC 3339 (fractional seconds allowed).
	LastActivityAnnotation = "sandbox-router.dev/last-activity"
	// ReleaseAnnotation on a Sandbox says when requests held for its new
	// pod are let through: "probe" (at the router's first successful
	// probe of the pod) or "ready" (once Kubernetes calls it Ready).
	ReleaseAnnotation = "sandbox-router.dev/release-on"
)

// Limits of the timeout annotations; a value beyond them is ignored.
const (
	maxIdleTimeout = 30 * 24 * time.Hour
	maxHoldTimeout = time.Hour
)

// transformer builds records.
type transformer struct {
	now func() int64
}

func newTransformer(now func() int64) *transformer {
	return &transformer{now: now}
}

// intern returns the canonical copy of a namespace name: a cluster has
// few namespaces, so 100,000 records need not hold 100,000 copies. The
// unique package drops names no record uses any more.
func (t *transformer) intern(ns string) string { return unique.Make(ns).Value() }

// sandboxTransform returns the informer transform for Sandboxes read
// through version v.
func (t *transformer) sandboxTransform(v apiVersion) cache.TransformFunc {
	return func(obj any) (any, error) {
		switch o := obj.(type) {
		case *unstructured.Unstructured:
			return t.sandbox(v, o), nil
		case *sandboxRecord, cache.DeletedFinalStateUnknown:
			return obj, nil // already transformed (relist, tombstone)
		}
		return nil, fmt.Errorf("sandbox transform: unexpected %T", obj)
	}
}

func (t *transformer) sandbox(v apiVersion, u *unstructured.Unstructured) *sandboxRecord {
	rec := &sandboxRecord{
		namespace:  t.intern(u.GetNamespace()),
		name:       u.GetName(),
		uid:        u.GetUID(),
		receivedAt: t.now(),
		version:    v,
		deleting:   u.GetDeletionTimestamp() != nil,
		created:    createdOf(u),
		meta:       metaOf(u),
	}
	rec.resourceVersion, _ = strconv.ParseUint(u.GetResourceVersion(), 10, 64)
	annotations := u.GetAnnotations()
	if p, ok := resolver.ParseProtocol(annotations[ProtocolAnnotation]); ok {
		rec.protocol = p
	}
	rec.parseLifecycle(annotations)
	if spec, ok := u.Object["spec"].(map[string]any); ok {
		rec.flags |= specSuspension(spec)
	}
	status, _ := u.Object["status"].(map[string]any)
	if ips, ok := status["podIPs"].([]any); ok && len(ips) > 0 {
		if s, ok := ips[0].(string); ok {
			rec.podIP = parsePodIP(s)
		}
	}
	conds, _ := status["conditions"].([]any)
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		typ, _ := m["type"].(string)
		st, _ := m["status"].(string)
		switch typ {
		case "Ready":
			rec.ready = parseCondition(st)
		case "Finished":
			rec.finished = parseCondition(st)
		}
	}
	return rec
}

// createdOf is u's creationTimestamp in Unix seconds, 0 when unset.
func createdOf(u *unstructured.Unstructured) int64 {
	if t := u.GetCreationTimestamp(); !t.IsZero() {
		return t.Unix()
	}
	return 0
}

// specSuspension reads both suspension fields whatever version the object
// was read through: v1beta1 operatingMode Suspended, v1alpha1 replicas 0.
// Without a conversion webhook a write through one version leaves the
// other version's field as it was (or absent), so either one asking for
// suspension means suspended; an absent field means running. The flags
// say which field asks, which is the one a resume must reset.
func specSuspension(spec map[string]any) sandboxFlags {
	var f sandboxFlags
	if mode, _ := spec["operatingMode"].(string); mode == "Suspended" {
		f |= modeSuspended
	}
	switch n := spec["replicas"].(type) {
	case int64:
		if n == 0 {
			f |= replicasZero
		}
	case float64:
		if n == 0 {
			f |= replicasZero
		}
	}
	return f
}

// parseLifecycle reads the suspend/resume annotations. A present but
// invalid value counts as absent and sets its invalid flag.
func (rec *sandboxRecord) parseLifecycle(annotations map[string]string) {
	if s, ok := annotations[IdleTimeoutAnnotation]; ok {
		if ms, ok := parseTimeout(s, 0, maxIdleTimeout); ok {
			rec.idleTimeout, rec.flags = ms, rec.flags|idleSet
		} else {
			rec.flags |= idleInvalid
		}
	}
	if s, ok := annotations[HoldTimeoutAnnotation]; ok {
		if ms, ok := parseTimeout(s, time.Nanosecond, maxHoldTimeout); ok {
			rec.holdTimeout, rec.flags = ms, rec.flags|holdSet
		} else {
			rec.flags |= holdInvalid
		}
	}
	if s, ok := annotations[ReleaseAnnotation]; ok {
		if r, ok := resolver.ParseRelease(s); ok {
			rec.release = r
		} else {
			rec.flags |= releaseInvalid
		}
	}
	if s, ok := annotations[LastActivityAnnotation]; ok {
		if ns, ok := parseTimestamp(s); ok {
			rec.lastActivity, rec.flags = ns, rec.flags|activitySet
		} else {
			rec.flags |= activityInvalid
		}
	}
}

// parseTimeout parses a Go duration within [lo, hi] into milliseconds,
// rounded up so that a positive duration never becomes 0.
func parseTimeout(s string, lo, hi time.Duration) (uint32, bool) {
	d, err := time.ParseDuration(s)
	if err != nil || d < lo || d > hi {
		return 0, false
	}
	return uint32((d + time.Millisecond - 1) / time.Millisecond), true
}

// parseTimestamp parses an RFC 3339 time (with or without fractional
// seconds) into Unix nanoseconds; a time those cannot hold is invalid.
func parseTimestamp(s string) (int64, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, false
	}
	if sec := t.Unix(); sec <= math.MinInt64/int64(time.Second) || sec >= math.MaxInt64/int64(time.Second) {
		return 0, false
	}
	return t.UnixNano(), true
}

func parseCondition(s string) condition {
	switch s {
	case "True":
		return condTrue
	case "False":
		return condFalse
	}
	return condUnknown
}

// parsePodIP accepts only a plain unicast address: a zone, or an
// unspecified, multicast or link-local address (169.254.169.254 is the
// cloud metadata service) is no pod IP to dial, whoever wrote the status.
// Loopback stays: the router refuses it unless --allow-loopback-pod-ip.
func parsePodIP(s string) netip.Addr {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.Unmap().IsLinkLocalUnicast() {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// podTransform is the informer transform for Pods.
func (t *transformer) podTransform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return t.pod(o), nil
	case *podRecord, cache.DeletedFinalStateUnknown:
		return obj, nil
	}
	return nil, fmt.Errorf("pod transform: unexpected %T", obj)
}

func (t *transformer) pod(p *corev1.Pod) *podRecord {
	rec := &podRecord{
		namespace:  t.intern(p.Namespace),
		name:       p.Name,
		receivedAt: t.now(),
		ip:         parsePodIP(p.Status.PodIP),
		deleting:   p.DeletionTimestamp != nil,
		terminal:   p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed,
	}
	for i := range p.OwnerReferences {
		ref := &p.OwnerReferences[i]
		if ref.Kind == "Sandbox" && ref.Controller != nil && *ref.Controller && apiGroup(ref.APIVersion) == Group {
			rec.owner, rec.ownerUID = ref.Name, ref.UID
			break
		}
	}
	// Only an unclaimed warm-pool pod is looked up by its own UID; other
	// pods are known by name, and dropping their UID saves its 48 bytes.
	if _, rec.warmPool = p.Labels[WarmPoolLabel]; rec.warmPool {
		rec.uid = p.UID
	}
	if p.Status.Phase == corev1.PodRunning {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				rec.ready = c.Status == corev1.ConditionTrue
			}
		}
	}
	rec.spec = unique.Make(readPodSpec(&p.Spec))
	return rec
}

// isH2CPortName reads the protocol hint of a container port's name, by the
// naming convention service meshes use: grpc*, h2c* and http2* are HTTP/2
// with prior knowledge. Other names give no hint.
func isH2CPortName(name string) bool {
	for _, prefix := range [...]string{"grpc", "h2c", "http2"} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

func apiGroup(apiVersion string) string {
	if i := strings.IndexByte(apiVersion, '/'); i >= 0 {
		return apiVersion[:i]
	}
	return ""
}
