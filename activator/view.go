package activator

import (
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// View is what only this replica's activator knows about the sandboxes,
// gathered for a reader such as the dashboard (whose Activity interface
// it satisfies without either package importing the other): requests in
// flight and their counts (Tracker), requests held (Activator), the idle
// timeout in effect (Policy), and recent events (Events). Tracker and
// Policy are required; a nil Activator holds nothing and a nil Events
// records nothing.
type View struct {
	Tracker   *Tracker
	Activator *Activator
	Policy    Policy
	Events    *Recorder
}

// State is the sandbox's requests in flight here and its last activity.
func (v View) State(key resolver.Key) (int64, time.Time) { return v.Tracker.State(key) }

// Held is the number of requests held per sandbox being woken.
func (v View) Held() map[resolver.Key]int {
	if v.Activator == nil {
		return nil
	}
	return v.Activator.Held()
}

// IdleTimeout is the idle timeout in effect (annotation, namespace default, global default).
func (v View) IdleTimeout(namespace string, lc resolver.Lifecycle) time.Duration {
	return v.Policy.idleTimeout(namespace, lc)
}

// Requests visits the request count of each sandbox tracked.
func (v View) Requests(visit func(key resolver.Key, total uint64)) { v.Tracker.Requests(visit) }

// VisitEvents visits the sandbox's recent events, newest first.
func (v View) VisitEvents(key resolver.Key, visit func(at time.Time, kind, text string, count int)) {
	v.Events.VisitEvents(key, visit)
}
