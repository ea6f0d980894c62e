package xds

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the xDS server's. Labels are resource types and client
// kinds, never names: a name is a sandbox.
type Metrics struct {
	clients       *prometheus.GaugeVec
	subscriptions *prometheus.GaugeVec
	pushes        *prometheus.CounterVec
	nacks         *prometheus.CounterVec
	pushSeconds   prometheus.Histogram
	coldRemovals  prometheus.Counter
	refused       *prometheus.CounterVec
	activity      *prometheus.CounterVec
}

// NewMetrics registers the xDS server's metrics with reg (nil: kept
// unregistered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		clients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandbox_router_xds_clients", Help: "Open xDS streams, by client kind (envoy, grpc) and protocol (delta, sotw).",
		}, []string{"kind", "protocol"}),
		subscriptions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandbox_router_xds_subscriptions", Help: "Resource names held by open streams in the on-demand cache, by type.",
		}, []string{"type"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_xds_responses_total", Help: "Responses the on-demand cache sent, by type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_xds_nacks_total", Help: "Responses a client rejected, by type; a rejected version is not sent to that node again.",
		}, []string{"type"}),
		pushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sandbox_router_xds_push_seconds",
			Help:    "From the moment the xDS cache took in a resolver change to the client's acknowledgement of the response that carried it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		coldRemovals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandbox_router_xds_cold_removals_total", Help: "Virtual hosts clients were told to drop because they had not asked for them within --xds-cold-after.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_xds_streams_refused_total", Help: "xDS streams refused, by reason (node_identity).",
		}, []string{"reason"}),
	}
	m.activity = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sandbox_router_xds_activity_reports_total", Help: "Sandboxes marked busy from client reports of direct traffic, by source (access_log from Envoy, load_report from proxyless gRPC).",
	}, []string{"source"})
	if reg != nil {
		reg.MustRegister(m.clients, m.subscriptions, m.pushes, m.nacks, m.pushSeconds, m.coldRemovals, m.refused, m.activity)
	}
	return m
}
