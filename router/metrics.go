package router

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the data plane's Prometheus series. Labels are bounded sets
// (status code, protocol, reason), never sandbox names: thousands of
// sandboxes must not mean thousands of series.
type Metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	inFlight        prometheus.Gauge
	upstreamErrors  *prometheus.CounterVec
	retries         prometheus.Counter
	upgradedOpen    prometheus.Gauge
	upgradedTotal   prometheus.Counter
	bytesIn         prometheus.Counter
	bytesOut        prometheus.Counter
	upstreamConns   prometheus.Gauge
	connWaits       prometheus.Counter
	connWaitSeconds prometheus.Observer
	connOverflows   *prometheus.CounterVec
	accessLogErrors prometheus.Counter
	openConns       *prometheus.GaugeVec   // side: client, upstream
	clientConns     prometheus.Gauge       // openConns{side="client"}, resolved once: it moves on every accept and close
	upstreamOpen    prometheus.Gauge       // openConns{side="upstream"}, the same on every dial and close
	connLimits      *prometheus.GaugeVec   // kind: client, tunnel, upstream
	refusals        *prometheus.CounterVec // reason: client_limit, tunnel_limit, upstream_limit
	fdErrors        *prometheus.CounterVec // op: accept, dial
	fdLimits        *prometheus.GaugeVec   // kind: soft, hard
	requestsCounter sync.Map               // requestsKey -> prometheus.Counter, avoids label hashing per request
	durationObs     sync.Map               // protocol -> prometheus.Observer
}

type requestsKey struct {
	code  int
	proto string
}

// NewMetrics registers the router's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_requests_total",
			Help: "Requests answered, by HTTP status code and client protocol.",
		}, []string{"code", "protocol"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sandbox_router_request_duration_seconds",
			Help:    "Time from request start to the end of the response, by client protocol.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"protocol"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandbox_router_requests_in_flight",
			Help: "Requests being served now.",
		}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_upstream_errors_total",
			Help: "Failed upstream attempts, by reason (dial, stale_connection, reset, upstream, timeout, client, body_too_large, busy).",
		}, []string{"reason"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandbox_router_upstream_retries_total",
			Help: "Upstream attempts retried because the request provably had not reached the sandbox.",
		}),
		upgradedOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandbox_router_upgraded_connections",
			Help: "Upgraded (WebSocket and other) connections open now.",
		}),
		upgradedTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandbox_router_upgraded_connections_total",
			Help: "Upgraded connections established.",
		}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandbox_router_request_body_bytes_total",
			Help: "Request body bytes read from clients.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandbox_router_response_body_bytes_total",
			Help: "Response body bytes written to clients.",
		}),
		upstreamConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandbox_router_upstream_connections",
			Help: "HTTP/1.1 connections open to sandboxes (idle, in use, being dialed); upgraded ones are counted apart.",
		}),
		connWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandbox_router_upstream_connection_waits_total",
			Help: "Requests that found their sandbox endpoint at its connection cap and waited for a connection.",
		}),
		connOverflows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_router_upstream_connection_overflows_total",
			Help: "Requests answered 503 upstream_busy at the per-endpoint connection cap, by reason (queue_full, timeout).",
		}, []string{"reason"}),
		accessLogErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandbox_router_access_log_errors_total",
			Help: "Access log writes that failed; the lines are lost, serving goes on.",
		}),
	}
	connWaitSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sandbox_router_upstream_connection_wait_seconds",
		Help:    "How long requests that waited at the per-endpoint connection cap waited until they got one.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	m.connWaitSeconds = connWaitSeconds
	m.openConns = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sandbox_router_open_connections",
		Help: "Open connections: side=client (the data listeners, tunnels included) or upstream (to sandboxes: pooled, h2c and tunnels).",
	}, []string{"side"})
	m.connLimits = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sandbox_router_connection_limit",
		Help: "The caps on client connections, tunnels and upstream connections (0: no cap).",
	}, []string{"kind"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sandbox_router_connections_refused_total",
		Help: "Connections and requests refused at a cap: reason=client_limit, tunnel_limit or upstream_limit.",
	}, []string{"reason"})
	m.fdErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sandbox_router_descriptor_exhaustion_total",
		Help: "Accepts and dials that failed because the process or system was out of file descriptors.",
	}, []string{"op"})
	m.fdLimits = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sandbox_router_descriptor_limit",
		Help: "The process's file descriptor limit (RLIMIT_NOFILE): kind=soft (in force) or hard.",
	}, []string{"kind"})
	m.clientConns = m.openConns.WithLabelValues("client")
	m.upstreamOpen = m.openConns.WithLabelValues("upstream")
	for _, r := range []string{"client_limit", "tunnel_limit", "upstream_limit"} {
		m.refusals.WithLabelValues(r)
	}
	for _, op := range []string{"accept", "dial"} {
		m.fdErrors.WithLabelValues(op)
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight, m.upstreamErrors, m.retries,
		m.upgradedOpen, m.upgradedTotal, m.bytesIn, m.bytesOut,
		m.upstreamConns, m.connWaits, connWaitSeconds, m.connOverflows, m.accessLogErrors,
		m.openConns, m.connLimits, m.refusals, m.fdErrors, m.fdLimits)
	return m
}

// SetDescriptorLimits reports the process's descriptor limits.
func (m *Metrics) SetDescriptorLimits(soft, hard uint64) {
	m.fdLimits.WithLabelValues("soft").Set(float64(soft))
	m.fdLimits.WithLabelValues("hard").Set(float64(hard))
}

func (m *Metrics) refused(reason string)     { m.refusals.WithLabelValues(reason).Inc() }
func (m *Metrics) descriptorError(op string) { m.fdErrors.WithLabelValues(op).Inc() }

func (m *Metrics) connOverflow(reason string) {
	m.connOverflows.WithLabelValues(reason).Inc()
}

func (m *Metrics) observeRequest(code int, proto string, seconds float64) {
	k := requestsKey{code, proto}
	c, ok := m.requestsCounter.Load(k)
	if !ok {
		c, _ = m.requestsCounter.LoadOrStore(k, m.requests.WithLabelValues(strconv.Itoa(code), proto))
	}
	c.(prometheus.Counter).Inc()
	o, ok := m.durationObs.Load(proto)
	if !ok {
		o, _ = m.durationObs.LoadOrStore(proto, m.duration.WithLabelValues(proto))
	}
	o.(prometheus.Observer).Observe(seconds)
}

var failReasons = [...]string{
	failDial:         "dial",
	failStale:        "stale_connection",
	failUpstream:     "upstream",
	failTimeout:      "timeout",
	failClient:       "client",
	failBodyTooLarge: "body_too_large",
	failBusy:         "busy",
	failReset:        "reset",
}

func (m *Metrics) upstreamError(kind failKind) {
	if int(kind) < len(failReasons) && failReasons[kind] != "" {
		m.upstreamErrors.WithLabelValues(failReasons[kind]).Inc()
	}
}
