package dashboard

import (
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Kinds of row.
const (
	kindSandbox = "sandbox"
	kindWarm    = "warm-pool-pod"
)

// Row is one sandbox (or warm-pool pod) as the pages show it: a line of
// the table, an entry of an event, the head of the one-sandbox view.
// Optional fields are absent when not known, so that "0" always means
// zero.
type Row struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	State     string `json:"state"`
	UID       string `json:"uid"`
	// PodIP is the pod's address while the sandbox runs.
	PodIP string `json:"podIP,omitempty"`
	// Pod is the name of the pod that serves the sandbox (or will, while
	// it starts), Created the sandbox's creation time (its age): both
	// only with SandboxDetails.
	Pod     string    `json:"pod,omitempty"`
	Created time.Time `json:"created,omitzero"`
	// IdleTimeoutSeconds: 0 means never suspended for idleness; absent
	// when not known (no annotation and no Activity to ask).
	IdleTimeoutSeconds *int64 `json:"idleTimeoutSeconds,omitempty"`
	// LastActivity is the latest recorded here or by any replica.
	LastActivity time.Time `json:"lastActivity,omitzero"`
	// IdleLeftSeconds estimates the time before idle suspension of a
	// running sandbox (see idleLeft); absent when unknown or never.
	IdleLeftSeconds *int64 `json:"idleLeftSeconds,omitempty"`
	// OpenRequests and HeldRequests are this replica's (Activity only).
	OpenRequests *int64 `json:"openRequests,omitempty"`
	HeldRequests *int   `json:"heldRequests,omitempty"`
	// Removed marks, in an event, a sandbox or pod that went away.
	Removed bool `json:"removed,omitempty"`
}

// rowMaker turns items into rows for one answer or message; it asks the
// activator for held requests once, not per row.
type rowMaker struct {
	sb   Sandboxes
	act  Activity
	now  time.Time
	held map[resolver.Key]int
}

func newRowMaker(sb Sandboxes, act Activity, now time.Time) *rowMaker {
	m := &rowMaker{sb: sb, act: act, now: now}
	if act != nil {
		m.held = act.Held()
	}
	return m
}

func (m *rowMaker) row(it *item) Row {
	r := Row{
		Namespace: it.res.Namespace,
		Name:      it.res.Name,
		Kind:      kindSandbox,
		State:     it.res.State.String(),
		UID:       it.res.UID,
		Removed:   it.removed,
	}
	if it.warm {
		r.Kind = kindWarm
	}
	if it.removed {
		r.State = resolver.StateUnknown.String()
		return r
	}
	if it.res.State == resolver.StateRunning && it.res.PodIP.IsValid() {
		r.PodIP = it.res.PodIP.String()
	}
	if it.warm {
		r.Pod = it.res.Name
		return r
	}
	if it.meta != nil {
		r.Pod, r.Created = it.meta.pod, it.meta.created
	}
	key := resolver.Key{Namespace: it.res.Namespace, Name: it.res.Name}
	lc, lcOK := m.sb.Lifecycle(resolver.Key{Namespace: key.Namespace, Name: key.Name, UID: it.res.UID})
	var (
		inFlight int64
		here     time.Time
	)
	if m.act != nil {
		inFlight, here = m.act.State(key)
		held := m.held[key]
		r.OpenRequests, r.HeldRequests = &inFlight, &held
	}
	r.LastActivity = later(lc.LastActivity, here)
	idle, idleKnown := m.idleTimeout(key.Namespace, lc, lcOK)
	if idleKnown {
		secs := int64(idle / time.Second)
		r.IdleTimeoutSeconds = &secs
	}
	if left, ok := idleLeft(it.res.State, idle, idleKnown, inFlight, r.LastActivity, m.now); ok {
		secs := int64((left + time.Second - 1) / time.Second)
		r.IdleLeftSeconds = &secs
	}
	return r
}

// idleTimeout is the timeout in effect: the activator's answer when there
// is one (it knows the namespace and global defaults), else the
// annotation's.
func (m *rowMaker) idleTimeout(namespace string, lc resolver.Lifecycle, lcOK bool) (time.Duration, bool) {
	switch {
	case !lcOK:
		return 0, false
	case m.act != nil:
		return m.act.IdleTimeout(namespace, lc), true
	case lc.IdleTimeoutSet:
		return lc.IdleTimeout, true
	}
	return 0, false
}

// idleLeft estimates how long a running sandbox has before it is suspended
// for idleness: its timeout from its last activity, the whole timeout
// while requests are open here. It is a lower bound: the replica that
// suspends also waits for other replicas' reports (a quarter of the
// timeout) and restarts the clock when it sees a sandbox start. Unknown
// without a last activity, since that clock is the suspending replica's.
func idleLeft(state resolver.State, idle time.Duration, known bool, inFlight int64, last, now time.Time) (time.Duration, bool) {
	switch {
	case state != resolver.StateRunning || !known || idle <= 0:
		return 0, false
	case inFlight > 0:
		return idle, true
	case last.IsZero():
		return 0, false
	}
	return max(last.Add(idle).Sub(now), 0), true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
