package resolver

import (
	"net/netip"
	"time"
)

// Candidate is the pod a starting sandbox is coming up on, known before
// Kubernetes calls it Ready: the one live pod that carries the sandbox's
// controller reference. The activator probes it to release held requests
// the moment it answers, rather than after the kubelet's next probe
// period and the status write that follows it.
type Candidate struct {
	// Pod is the pod's name: two candidates are the same pod only when
	// both Pod and PodIP agree.
	Pod string
	// PodIP is the pod's address; invalid until the pod has one.
	PodIP    netip.Addr
	H2CPorts [MaxPortHints]uint16
	// Readiness is how to tell, from outside, that the pod serves.
	Readiness Readiness
}

// Same reports whether c and o are the same pod at the same address.
func (c *Candidate) Same(o *Candidate) bool { return c.Pod == o.Pod && c.PodIP == o.PodIP }

// Readiness is a pod's readiness as its spec defines it: the readiness and
// startup probes of its containers, every one of which must pass. A pod
// without any is ready once its containers run, which from outside means
// its port accepts connections.
type Readiness struct {
	// Checks are the probes to run, in order; unused slots are zero
	// (CheckNone).
	Checks [MaxReadinessChecks]Check
	// Opaque: the pod's readiness cannot be judged from outside (an exec
	// probe, a probe of another host, more probes than Checks holds), so
	// only the Ready condition tells.
	Opaque bool
}

// MaxReadinessChecks bounds the probes a Readiness carries: one container
// with a startup and a readiness probe, and a sidecar with the same.
const MaxReadinessChecks = 4

// CheckKind is the kind of one readiness probe.
type CheckKind uint8

const (
	CheckNone CheckKind = iota
	// CheckTCP: a connection to Port is accepted.
	CheckTCP
	// CheckHTTP, CheckHTTPS: GET Path on Port answers 200-399 (HTTPS
	// without certificate verification, as the kubelet does).
	CheckHTTP
	CheckHTTPS
	// CheckGRPC: the standard gRPC health service on Port says SERVING
	// for Service.
	CheckGRPC
)

var checkKindNames = [...]string{CheckNone: "none", CheckTCP: "tcp", CheckHTTP: "http", CheckHTTPS: "https", CheckGRPC: "grpc"}

func (k CheckKind) String() string {
	if int(k) < len(checkKindNames) {
		return checkKindNames[k]
	}
	return "invalid"
}

// Check is one readiness probe of a pod, its port resolved to a number. It
// is a comparable value, so that pods of one template can share it.
type Check struct {
	Kind CheckKind
	Port uint16
	// TimeoutSeconds is the probe's own timeout (at least 1).
	TimeoutSeconds uint16
	// Path is the HTTP path and query, starting with '/'.
	Path string
	// Header holds the probe's HTTP headers as "Name: value\n" lines,
	// already validated; empty for none.
	Header string
	// Service is the gRPC health service name ("" for the server).
	Service string
}

// Release says when requests held for a starting sandbox are let through.
type Release uint8

const (
	// ReleaseDefault: as the router is configured.
	ReleaseDefault Release = iota
	// ReleaseOnProbe: at the first successful probe of the new pod, even
	// before Kubernetes calls it Ready.
	ReleaseOnProbe
	// ReleaseOnReady: only once the pod is Ready, for workloads whose
	// readiness means more than their probe.
	ReleaseOnReady
)

var releaseNames = [...]string{ReleaseDefault: "", ReleaseOnProbe: "probe", ReleaseOnReady: "ready"}

func (r Release) String() string {
	if int(r) < len(releaseNames) {
		return releaseNames[r]
	}
	return "invalid"
}

// ParseRelease is the inverse of Release.String for "probe" and "ready".
func ParseRelease(s string) (Release, bool) {
	switch s {
	case "probe":
		return ReleaseOnProbe, true
	case "ready":
		return ReleaseOnReady, true
	}
	return ReleaseDefault, false
}

// readinessTimeoutCap bounds a probe's own timeout as the activator uses
// it: a held request must not wait on one connect for minutes.
const readinessTimeoutCap = 10 * time.Second

// Timeout is the check's timeout, within [1s, 10s].
func (c *Check) Timeout() time.Duration {
	return min(max(time.Duration(c.TimeoutSeconds)*time.Second, time.Second), readinessTimeoutCap)
}
