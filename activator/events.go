package activator

import (
	"container/list"
	"strconv"
	"sync"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Event is something that happened to one sandbox on this replica, for
// people looking at it (the dashboard): a wake-up, a release, a failure.
type Event struct {
	At   time.Time
	Kind string // one of the Event* kinds
	Text string // short, fixed wording with numbers; nothing a client sent
	// Count is how many times in a row it happened (the same kind and
	// text); At is the latest.
	Count int
}

// Kinds of Event.
const (
	EventWake           = "wake"            // a wake-up began: the first request held
	EventReleased       = "released"        // held requests went to the pod
	EventHoldTimeout    = "hold_timeout"    // a held request ran out of time
	EventHoldRefused    = "hold_refused"    // a request was refused a place in the queue
	EventResumeFailed   = "resume_failed"   // the resume call failed
	EventSuspended      = "suspended"       // suspended for idleness
	EventSuspendFailed  = "suspend_failed"  // the suspend call failed
	EventUpstreamFailed = "upstream_failed" // the router answered an error for the sandbox
)

// Bounds of a Recorder: the events kept per sandbox, and the default
// number of sandboxes.
const (
	eventsPerSandbox    = 16
	DefaultMaxSandboxes = 4096
)

// Recorder keeps the last few events of the sandboxes that had any, in
// bounded memory: a ring of eventsPerSandbox per sandbox, and at most
// MaxSandboxes sandboxes, the one whose last event is oldest going first.
// Events are rare next to requests (wake-ups, suspensions, failures), so
// one lock is enough; a storm of the same failure folds into one event
// with a count. A nil *Recorder records nothing.
type Recorder struct {
	mu   sync.Mutex
	max  int
	byNS map[nsName]*list.Element // of *eventRing
	lru  *list.List               // front: most recent event
	now  func() time.Time
}

// eventRing is one sandbox's last events.
type eventRing struct {
	key    nsName
	events [eventsPerSandbox]Event
	next   int // where the next event goes
	n      int
}

// NewRecorder keeps the events of at most maxSandboxes sandboxes
// (DefaultMaxSandboxes when <= 0).
func NewRecorder(maxSandboxes int) *Recorder {
	if maxSandboxes <= 0 {
		maxSandboxes = DefaultMaxSandboxes
	}
	return &Recorder{max: maxSandboxes, byNS: make(map[nsName]*list.Element), lru: list.New(), now: time.Now}
}

// record adds an event for the sandbox named by key (its namespace and
// name; a key without a name is not a sandbox and is ignored).
func (r *Recorder) record(key resolver.Key, kind, text string) {
	if r == nil || key.Name == "" {
		return
	}
	nn := nsName{key.Namespace, key.Name}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var ring *eventRing
	if el := r.byNS[nn]; el != nil {
		r.lru.MoveToFront(el)
		ring = el.Value.(*eventRing)
	} else {
		if r.lru.Len() >= r.max {
			oldest := r.lru.Back()
			delete(r.byNS, oldest.Value.(*eventRing).key)
			r.lru.Remove(oldest)
		}
		ring = &eventRing{key: nn}
		r.byNS[nn] = r.lru.PushFront(ring)
	}
	if ring.n > 0 {
		last := &ring.events[(ring.next+eventsPerSandbox-1)%eventsPerSandbox]
		if last.Kind == kind && last.Text == text {
			last.At = now
			last.Count++
			return
		}
	}
	ring.events[ring.next] = Event{At: now, Kind: kind, Text: text, Count: 1}
	ring.next = (ring.next + 1) % eventsPerSandbox
	ring.n = min(ring.n+1, eventsPerSandbox)
}

// Events is the sandbox's recent events on this replica, newest first.
func (r *Recorder) Events(key resolver.Key) []Event {
	var out []Event
	r.VisitEvents(key, func(at time.Time, kind, text string, count int) {
		out = append(out, Event{At: at, Kind: kind, Text: text, Count: count})
	})
	return out
}

// VisitEvents calls visit with the sandbox's recent events, newest
// first. It is Events without a type of this package, so that a reader
// (the dashboard) needs no import of it.
func (r *Recorder) VisitEvents(key resolver.Key, visit func(at time.Time, kind, text string, count int)) {
	if r == nil {
		return
	}
	r.mu.Lock()
	el := r.byNS[nsName{key.Namespace, key.Name}]
	var ring eventRing
	if el != nil {
		ring = *el.Value.(*eventRing) // a copy: visit runs without the lock
	}
	r.mu.Unlock()
	for i := 1; i <= ring.n; i++ {
		e := &ring.events[(ring.next+eventsPerSandbox-i)%eventsPerSandbox]
		visit(e.At, e.Kind, e.Text, e.Count)
	}
}

// Len is the number of sandboxes with events kept.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lru.Len()
}

// SandboxError records that the router answered a request for the
// sandbox with an error of its own (status and code): the router's
// ErrorEvents hook.
func (r *Recorder) SandboxError(key resolver.Key, status int, code string) {
	r.record(key, EventUpstreamFailed, "answered "+strconv.Itoa(status)+" "+code)
}

// seconds formats a duration for an event's text: "1.25s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}
