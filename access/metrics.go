package access

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the access layer's series. Labels are bounded sets (mode,
// result, cache, api); never a user or a sandbox.
type Metrics struct {
	mode      *prometheus.GaugeVec
	decisions *prometheus.CounterVec
	caches    *prometheus.CounterVec
	calls     *prometheus.CounterVec
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
			Help: "Lookups of the access caches (token: TokenReview answers, decision: SubjectAccessReview answers), by result (hit, miss, stale: served past its time to live while the API server could not answer).",
		}, []string{"cache", "result"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_access_api_calls_total",
			Help: "Reviews asked of the API server (token: TokenReview, decision: SubjectAccessReview), by result (ok, error).",
		}, []string{"cache", "result"}),
	}
	reg.MustRegister(m.mode, m.decisions, m.caches, m.calls)
	return m
}

func (m *Metrics) setMode(mode Mode) { m.mode.WithLabelValues(string(mode)).Set(1) }

func (m *Metrics) decided(err error) {
	result := "allowed"
	var e *Error
	if errors.As(err, &e) {
		result = e.Code
	} else if err != nil {
		result = "client_gone"
	}
	m.decisions.WithLabelValues(result).Inc()
}

func (m *Metrics) cache(name, result string) { m.caches.WithLabelValues(name, result).Inc() }

func (m *Metrics) called(name string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.calls.WithLabelValues(name, result).Inc()
}
