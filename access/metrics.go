package access

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the access layer's series. Labels are bounded sets (mode,
// result, cache, api); never a user or a sandbox.
type Metrics struct {
	mode      *prometheus.GaugeVec
	decisions *prometheus.CounterVec
	caches    *prometheus.CounterVec
	calls     *prometheus.CounterVec
	limits    *prometheus.CounterVec
	// results are the decisions counters by result, resolved once: the
	// hot path must not hash label values.
	results map[string]prometheus.Counter
}

// memoCounters are one memo's series, resolved once.
type memoCounters struct {
	hit, miss, stale, calls, callErrors prometheus.Counter
}

// NewMetrics registers the access metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		mode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandbox_router_access_mode",
			Help: "1 for the access mode in force (allow-all: anyone who reaches the router reaches every sandbox).",
		}, []string{"mode"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_access_decisions_total",
			Help: "Access decisions, by result (allowed, missing_credentials, invalid_credentials, sandbox_forbidden, access_unavailable).",
		}, []string{"result"}),
		caches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_access_cache_total",
			Help: "Lookups of the access caches (token: TokenReview answers, decision: SubjectAccessReview answers, view: the list and get SubjectAccessReviews of read-only views), by result (hit, miss, stale: served past its time to live while the API server could not answer).",
		}, []string{"cache", "result"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_access_api_calls_total",
			Help: "Reviews asked of the API server (token: TokenReview, decision: SubjectAccessReview, view: SubjectAccessReview of list or get), by result (ok, error).",
		}, []string{"cache", "result"}),
		limits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_access_limited_total",
			Help: "Requests answered 429 by a limit (identity, sandbox, concurrency, failed_auth).",
		}, []string{"limit"}),
	}
	reg.MustRegister(m.mode, m.decisions, m.caches, m.calls, m.limits)
	m.results = map[string]prometheus.Counter{}
	for _, r := range []string{"allowed", "client_gone", CodeMissingCredentials, CodeInvalidCredentials, CodeForbidden, CodeUnavailable} {
		m.results[r] = m.decisions.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) memoCounters(name string) memoCounters {
	return memoCounters{
		hit: m.caches.WithLabelValues(name, "hit"), miss: m.caches.WithLabelValues(name, "miss"),
		stale: m.caches.WithLabelValues(name, "stale"),
		calls: m.calls.WithLabelValues(name, "ok"), callErrors: m.calls.WithLabelValues(name, "error"),
	}
}

func (m *Metrics) setMode(mode Mode) { m.mode.WithLabelValues(string(mode)).Set(1) }

func (m *Metrics) decided(err error) {
	result := "allowed"
	if e, ok := err.(*Error); ok { // the Checker's own, never wrapped
		result = e.Code
	} else if err != nil {
		result = "client_gone"
	}
	if c, ok := m.results[result]; ok {
		c.Inc()
		return
	}
	m.decisions.WithLabelValues(result).Inc()
}

func (m *Metrics) limited(limit string) { m.limits.WithLabelValues(limit).Inc() }
