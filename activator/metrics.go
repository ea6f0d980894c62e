package activator

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the activator's Prometheus series; labels are bounded sets,
// never sandbox names.
type Metrics struct {
	held            prometheus.Gauge
	overflow        *prometheus.CounterVec
	holdTimeouts    prometheus.Counter
	resumes         *prometheus.CounterVec
	resumeLatency   prometheus.Histogram
	suspensions     *prometheus.CounterVec
	suspendFailures *prometheus.CounterVec
	activityWrites  *prometheus.CounterVec
	tracked         prometheus.Gauge
	leader          prometheus.Gauge
	wakePhase       *prometheus.HistogramVec
	releases        *prometheus.CounterVec
}

// NewMetrics registers the activator's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandbox_router_activator_held_requests",
			Help: "Requests held now, waiting for their sandbox to resume.",
		}),
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_activator_overflow_total",
			Help: "Requests answered 503 because a hold bound was reached, by bound (sandbox, total).",
		}, []string{"bound"}),
		holdTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandbox_router_activator_hold_timeouts_total",
			Help: "Held requests answered 504 because the hold timeout or their own deadline passed.",
		}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_activator_resumes_total",
			Help: "Resume calls to the API server, by result (ok, forbidden, not_found, invalid, error).",
		}, []string{"result"}),
		resumeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sandbox_router_activator_resume_duration_seconds",
			Help:    "Time from the first held request of a wake-up to the first release.",
			Buckets: []float64{.05, .1, .25, .5, .75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60},
		}),
		suspensions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_activator_suspensions_total",
			Help: "Sandboxes suspended by this replica, by reason (idle).",
		}, []string{"reason"}),
		suspendFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_activator_suspend_failures_total",
			Help: "Suspensions not made, by reason (conflict: the sandbox changed since it was judged idle; forbidden, not_found, invalid, error).",
		}, []string{"reason"}),
		activityWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_activator_activity_writes_total",
			Help: "Last-activity annotation writes, by result.",
		}, []string{"result"}),
		tracked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandbox_router_activator_tracked_sandboxes",
			Help: "Sandboxes with recent activity on this replica.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandbox_router_activator_leader",
			Help: "1 while this replica is the one that suspends idle sandboxes.",
		}),
		wakePhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sandbox_router_activator_wake_phase_seconds",
			Help:    "Time from the first held request of a wake-up to each phase: patch_sent, patch_acked, pod_seen, address_seen, probe_ok, ready_seen, first_byte.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60},
		}, []string{"phase"}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_activator_releases_total",
			Help: "Wake-ups whose held requests were released, by what let them through: probe (the router's probe of the new pod, before Ready) or ready (the pod's Ready condition).",
		}, []string{"on"}),
	}
	reg.MustRegister(m.held, m.overflow, m.holdTimeouts, m.resumes, m.resumeLatency,
		m.suspensions, m.suspendFailures, m.activityWrites, m.tracked, m.leader, m.wakePhase, m.releases)
	for _, p := range phaseNames {
		m.wakePhase.WithLabelValues(p)
	}
	for _, on := range []string{releaseOnProbe, releaseOnReady} {
		m.releases.WithLabelValues(on)
	}
	for _, r := range []string{"ok", "forbidden", "not_found", "invalid", "error"} {
		m.resumes.WithLabelValues(r)
	}
	m.suspensions.WithLabelValues("idle")
	m.overflow.WithLabelValues("sandbox")
	m.overflow.WithLabelValues("total")
	return m
}

// SetLeader records whether this replica leads.
func (m *Metrics) SetLeader(leading bool) {
	if leading {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}
