package resolver

import (
	"context"
	"net/netip"
	"time"
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

// Lifecycle is a sandbox's suspend/resume policy, read from its
// annotations on the newest view of the object the resolver holds. It is
// what the activator needs besides the routing answer: how long to hold
// requests while the sandbox resumes, how long it may stay idle before it
// is suspended, and when some router last saw traffic for it.
type Lifecycle struct {
	// IdleTimeout is how long the sandbox may go without traffic before
	// it is suspended; 0 means never suspend it for idleness. Valid only
	// when IdleTimeoutSet; otherwise the activator's default applies.
	IdleTimeout    time.Duration
	IdleTimeoutSet bool
	// HoldTimeout bounds how long a request waits for the sandbox to
	// resume (always > 0 when set). Valid only when HoldTimeoutSet.
	HoldTimeout    time.Duration
	HoldTimeoutSet bool
	// LastActivity is the last traffic some router recorded on the
	// object; zero when absent (or unreadable).
	LastActivity time.Time
	// Release says when held requests go to a new pod: ReleaseDefault
	// when the sandbox does not say.
	Release Release
	// Revision is the resourceVersion of the view this was read from:
	// the precondition for a suspend patch, so that a sandbox that
	// changed since (new activity, a resume) is not suspended on stale
	// information.
	Revision string
}

// Feed is a coalesced stream of changed sandbox keys: however often a
// sandbox changes between two calls of Next, it is reported once. Its
// memory is bounded by the number of sandboxes.
type Feed interface {
	// Next blocks until at least one sandbox changed since the previous
	// call (or since the feed was created), then returns every key that
	// changed: a name key for a sandbox, a UID key for a warm-pool pod.
	// Look the keys up for their current state. It returns ctx's error
	// when ctx ends first.
	Next(ctx context.Context) ([]Key, error)
	// Close ends the subscription.
	Close()
}

// IsDNSLabel reports whether s is an RFC 1123 label as Kubernetes names
// namespaces and sandboxes: 1-63 lower-case alphanumerics or '-',
// starting and ending with an alphanumeric. Every name a client sends is
// held to it before it reaches a lookup.
func IsDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-' && i != 0 && i != len(s)-1:
		default:
			return false
		}
	}
	return true
}
