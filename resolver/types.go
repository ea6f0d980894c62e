package resolver

import (
	"net/netip"
)

// Key names one sandbox. Name and UID are alternatives: a lookup by UID
// ignores Name, which is how unclaimed warm-pool pods stay reachable only by
// UID.
type Key struct {
	Namespace string
	Name      string
	UID       string
}

// State is the lifecycle phase of a sandbox as far as routing cares.
type State uint8

const (
	// StateUnknown: no such sandbox (once the cache has synced).
	StateUnknown State = iota
	// StateRunning: the sandbox has a ready pod; Result.PodIP is set.
	StateRunning
	// StateStarting: the sandbox should run but its pod is not ready yet.
	StateStarting
	// StateSuspending: a suspension was requested and the pod is going away.
	StateSuspending
	// StateSuspended: the sandbox has no pod on purpose and can be resumed.
	StateSuspended
	// StateFinished: the sandbox ended for good; it will not serve again.
	StateFinished
)

var stateNames = [...]string{
	StateUnknown:    "unknown",
	StateRunning:    "running",
	StateStarting:   "starting",
	StateSuspending: "suspending",
	StateSuspended:  "suspended",
	StateFinished:   "finished",
}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "invalid"
}

// ParseState is the inverse of State.String.
func ParseState(s string) (State, bool) {
	for i, name := range stateNames {
		if name == s {
			return State(i), true
		}
	}
	return StateUnknown, false
}

// Protocol is the application protocol a sandbox speaks on its port, when
// it is known ahead of the request.
type Protocol uint8

const (
	// ProtocolAuto lets the router choose per request: gRPC goes over h2c,
	// everything else over HTTP/1.1.
	ProtocolAuto Protocol = iota
	// ProtocolHTTP1 forces HTTP/1.1 to the sandbox.
	ProtocolHTTP1
	// ProtocolH2C forces cleartext HTTP/2 (prior knowledge) to the sandbox.
	ProtocolH2C
)

var protocolNames = [...]string{ProtocolAuto: "auto", ProtocolHTTP1: "http1", ProtocolH2C: "h2c"}

func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return "invalid"
}

// ParseProtocol is the inverse of Protocol.String; "" means auto.
func ParseProtocol(s string) (Protocol, bool) {
	if s == "" {
		return ProtocolAuto, true
	}
	for i, name := range protocolNames {
		if name == s {
			return Protocol(i), true
		}
	}
	return ProtocolAuto, false
}

// Result is the answer to a lookup. It is a small value type so that a hit
// costs no allocation.
type Result struct {
	State State
	// Namespace and Name identify the sandbox found (useful when the lookup
	// was by UID).
	Namespace string
	Name      string
	UID       string
	// PodIP is valid only when State is StateRunning.
	PodIP    netip.Addr
	Protocol Protocol
	// H2CPorts are ports the pod declares as HTTP/2 with prior knowledge
	// (by container port name, e.g. "grpc"); zeros are unused slots. They
	// override an automatic Protocol for their port.
	H2CPorts [MaxPortHints]uint16
}

// MaxPortHints bounds the per-port protocol hints a Result carries, so it
// stays a small comparable value.
const MaxPortHints = 4

// ProtocolFor is the protocol to speak to port: Protocol when it is
// forced, else the port's hint, else automatic.
func (r *Result) ProtocolFor(port uint16) Protocol {
	if r.Protocol != ProtocolAuto || port == 0 {
		return r.Protocol
	}
	for _, p := range r.H2CPorts {
		if p == port {
			return ProtocolH2C
		}
	}
	return ProtocolAuto
}
