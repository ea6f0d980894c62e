package activator

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// phase is a milestone of one wake-up, timed from the first held request.
type phase uint8

const (
	phasePatchSent   phase = iota // the resume patch went out
	phasePatchAcked               // the API server accepted it
	phasePodSeen                  // the new pod reached the resolver
	phaseAddressSeen              // with an address
	phaseProbeOK                  // the router's first successful probe of it
	phaseReadySeen                // Kubernetes called it Ready
	phaseFirstByte                // the first released request had its response head
	numPhases
)

var phaseNames = [numPhases]string{
	phasePatchSent:   "patch_sent",
	phasePatchAcked:  "patch_acked",
	phasePodSeen:     "pod_seen",
	phaseAddressSeen: "address_seen",
	phaseProbeOK:     "probe_ok",
	phaseReadySeen:   "ready_seen",
	phaseFirstByte:   "first_byte",
}

// timeline records when each phase of a wake-up was first reached. The
// episode's goroutine marks all but the first byte, which the first
// released request marks; each phase is observed in the histogram once,
// as it happens, and the whole is logged once the episode has ended and
// its first byte (if any) is in.
type timeline struct {
	start time.Time
	m     *Metrics
	log   *slog.Logger
	attrs []any // namespace and sandbox, for the log line

	mu       sync.Mutex
	at       [numPhases]time.Duration
	reached  [numPhases]bool
	released string // what released the requests: probe or ready; "" while none was
	ended    bool
	logged   bool
}

func newTimeline(start time.Time, m *Metrics, log *slog.Logger, namespace, name string) *timeline {
	return &timeline{start: start, m: m, log: log, attrs: []any{"namespace", namespace, "sandbox", name}}
}

// mark records p now, unless it was reached before.
func (t *timeline) mark(p phase) {
	now := time.Now()
	t.mu.Lock()
	if t.reached[p] {
		t.mu.Unlock()
		return
	}
	d := now.Sub(t.start)
	t.at[p], t.reached[p] = d, true
	report := p == phaseFirstByte && t.ended
	t.mu.Unlock()
	t.m.wakePhase.WithLabelValues(phaseNames[p]).Observe(d.Seconds())
	if report {
		t.report()
	}
}

// releasing records what let the first requests through; it reports
// whether these were the first.
func (t *timeline) releasing(on string) bool {
	t.mu.Lock()
	first := t.released == ""
	if first {
		t.released = on
	}
	t.mu.Unlock()
	if first {
		t.m.releases.WithLabelValues(on).Inc()
	}
	return first
}

// end closes the timeline: it is logged now, or at its first byte when a
// released request still waits for its response head.
func (t *timeline) end() {
	t.mu.Lock()
	t.ended = true
	wait := t.released != "" && !t.reached[phaseFirstByte]
	t.mu.Unlock()
	if !wait {
		t.report()
	}
}

func (t *timeline) report() {
	if !t.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	t.mu.Lock()
	if t.logged {
		t.mu.Unlock()
		return
	}
	t.logged = true
	args := append([]any{}, t.attrs...)
	args = append(args, "released_on", t.released)
	for p := range numPhases {
		if t.reached[p] {
			args = append(args, phaseNames[p], t.at[p])
		}
	}
	t.mu.Unlock()
	t.log.Debug("wake-up", args...)
}
