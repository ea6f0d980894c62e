package kube

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers the resolver's metrics with reg: how long a
// change takes from the watch event's decoding to lookups (the resolver's
// own share of propagation), how many sandboxes it knows, whether its
// caches have synced, and how many lifecycle annotations it ignored as
// invalid. Call it before Run; it sets Options.ObserveLatency's
// place, so use one or the other.
func (r *Resolver) RegisterMetrics(reg prometheus.Registerer) error {
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sandbox_router_resolver_update_latency_seconds",
		Help:    "Time from a watch event's decoding to the changed answer being visible to lookups.",
		Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 250e-3, 1},
	})
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sandbox_router_resolver_sandboxes",
		Help: "Sandboxes and unclaimed warm-pool pods in the resolver's cache.",
	}, func() float64 { return float64(r.idx.size()) })
	synced := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sandbox_router_resolver_synced",
		Help: "1 once every informer delivered its initial list.",
	}, func() float64 {
		if r.Synced() {
			return 1
		}
		return 0
	})
	invalid := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sandbox_router_resolver_invalid_annotations_total",
		Help: "Lifecycle annotations (idle-timeout, hold-timeout, last-activity) found invalid on a sandbox and ignored, counted when they appear.",
	}, func() float64 { return float64(r.invalidAnnotations.Load()) })
	for _, c := range []prometheus.Collector{latency, entries, synced, invalid} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	r.idx.observe = func(d time.Duration) { latency.Observe(d.Seconds()) }
	return nil
}
