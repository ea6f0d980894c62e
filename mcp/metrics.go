package mcp

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the MCP endpoint's series. Labels are bounded sets (the
// tool names, outcomes); never a caller or a sandbox.
type Metrics struct {
	calls   *prometheus.CounterVec
	seconds *prometheus.HistogramVec
}

// NewMetrics registers the MCP metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_mcp_tool_calls_total",
			Help: "MCP tool calls, by tool and outcome (ok, error, rate_limited, concurrency_limited).",
		}, []string{"tool", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sandbox_router_mcp_tool_call_seconds",
			Help:    "How long MCP tool calls took, by tool (a woken sandbox's resume included).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"tool"}),
	}
	reg.MustRegister(m.calls, m.seconds)
	return m
}

func (m *Metrics) call(tool, outcome string) { m.calls.WithLabelValues(tool, outcome).Inc() }
