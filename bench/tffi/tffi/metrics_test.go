package tffi

import (
	"context"
	"math"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestParseSample(t *testing.T) {
	tests := []struct {
		line   string
		name   string
		labels map[string]string
		value  float64
	}{
		{`up 1`, "up", map[string]string{}, 1},
		{`a_total{on="probe"} 3 1700000000000`, "a_total", map[string]string{"on": "probe"}, 3},
		{`h_bucket{phase="x",le="+Inf"} 7`, "h_bucket", map[string]string{"phase": "x", "le": "+Inf"}, 7},
		{`m{a="q\"uo\\te,}",b="n\nl"} 2.5e-3`, "m", map[string]string{"a": `q"uo\te,}`, "b": "n\nl"}, 0.0025},
	}
	for _, tt := range tests {
		sm, err := parseSample(tt.line)
		if err != nil {
			t.Errorf("%s: %v", tt.line, err)
			continue
		}
		if sm.name != tt.name || sm.value != tt.value || len(sm.labels) != len(tt.labels) {
			t.Errorf("%s: got %+v", tt.line, sm)
		}
		for k, v := range tt.labels {
			if sm.labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q", tt.line, k, sm.labels[k], v)
			}
		}
	}
	for _, bad := range []string{`nothing`, `m{a="x} 1`, `m{a} 1`, `m{a="x"}`, `m x`} {
		if _, err := parseSample(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name string
		h    histogram
		q    float64
		want float64
	}{
		{"within a bucket", histogram{buckets: []bucket{{0.01, 0}, {0.025, 5}, {0.05, 10}, {inf, 10}}}, 0.5, 0.025},
		{"interpolated", histogram{buckets: []bucket{{0.01, 0}, {0.025, 5}, {0.05, 10}, {inf, 10}}}, 0.99, 0.0495},
		{"first bucket from zero", histogram{buckets: []bucket{{0.01, 4}, {inf, 4}}}, 0.5, 0.005},
		{"in +Inf", histogram{buckets: []bucket{{0.01, 0}, {1, 1}, {inf, 4}}}, 0.99, 1},
		{"empty", histogram{buckets: []bucket{{0.01, 0}, {inf, 0}}}, 0.5, math.NaN()},
		{"no buckets", histogram{}, 0.5, math.NaN()},
	}
	for _, tt := range tests {
		got := tt.h.Quantile(tt.q)
		if math.IsNaN(tt.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tt.want) > 1e-9) {
			t.Errorf("%s: q%v = %v, want %v", tt.name, tt.q, got, tt.want)
		}
	}
}

// TestScrapeRouterMetrics reads histograms and counters exposed by the
// Prometheus client as the router registers them, and takes the
// difference of two scrapes.
func TestScrapeRouterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	phase := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    metricWakePhase,
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60},
	}, []string{"phase"})
	releases := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricReleases}, []string{"on"})
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "sandbox_router_requests_total"})
	reg.MustRegister(phase, releases, other)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	phase.WithLabelValues("first_byte").Observe(9) // before: not counted
	releases.WithLabelValues("ready").Inc()
	other.Inc()
	before, err := scrape(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		phase.WithLabelValues("first_byte").Observe(0.004)
		phase.WithLabelValues("probe_ok").Observe(0.003)
		releases.WithLabelValues("probe").Inc()
	}
	phase.WithLabelValues("ready_seen").Observe(0.7)
	after, err := scrape(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	d := after.minus(before)
	if got := d.phases["first_byte"].count; got != 10 {
		t.Errorf("first_byte count %v, want 10", got)
	}
	if got := d.releases[ModeProbe]; got != 10 {
		t.Errorf("probe releases %v, want 10", got)
	}
	if got := d.releases[ModeReady]; got != 0 {
		t.Errorf("ready releases %v, want 0", got)
	}
	// 10 observations of 4ms in (2.5ms, 5ms]: p50 at the middle.
	if got := d.phases["first_byte"].Quantile(0.5); math.Abs(got-0.00375) > 1e-9 {
		t.Errorf("first_byte p50 %v, want 0.00375", got)
	}
	rp := routerPhases(d)
	if rp.Count["ready_seen"] != 1 || rp.P99["ready_seen"] <= 0 {
		t.Errorf("ready_seen: %v, p99 %v", rp.Count["ready_seen"], rp.P99["ready_seen"])
	}
	if _, ok := rp.P50["patch_sent"]; ok {
		t.Error("a phase never observed has a p50")
	}
}

func TestMinusAfterRestart(t *testing.T) {
	inf := math.Inf(1)
	before := snapshot{
		phases:   map[string]histogram{"first_byte": {buckets: []bucket{{0.01, 5}, {inf, 8}}, count: 8}},
		releases: map[string]float64{"probe": 8},
	}
	after := snapshot{
		phases:   map[string]histogram{"first_byte": {buckets: []bucket{{0.01, 1}, {inf, 2}}, count: 2}},
		releases: map[string]float64{"probe": 2},
	}
	d := after.minus(before)
	if d.releases["probe"] != 2 || d.phases["first_byte"].count != 2 || d.phases["first_byte"].buckets[0].n != 1 {
		t.Errorf("after a restart: %+v", d)
	}
}

func TestParseSnapshotRejects(t *testing.T) {
	_, err := parseSnapshot(strings.NewReader(metricWakePhase + `_bucket{phase="x",le="soon"} 1` + "\n"))
	if err == nil {
		t.Error("a bad le was read")
	}
}
