package dashboard

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func TestBucketQuantile(t *testing.T) {
	inf := math.Inf(1)
	three := []bucket{{0.25, 0}, {0.5, 2}, {0.75, 3}, {inf, 3}}
	for _, tc := range []struct {
		name string
		q    float64
		b    []bucket
		want float64
		ok   bool
	}{
		{"no buckets", 0.5, nil, 0, false},
		{"only +Inf", 0.5, []bucket{{inf, 4}}, 0, false},
		{"no +Inf bucket", 0.5, []bucket{{1, 4}, {2, 4}}, 0, false},
		{"empty window", 0.5, []bucket{{1, 0}, {inf, 0}}, 0, false},
		{"median inside a bucket", 0.5, three, 0.25 + 0.25*0.75, true},
		{"p99 inside the last finite bucket", 0.99, three, 0.5 + 0.25*0.97, true},
		{"first bucket interpolates from zero", 0.5, []bucket{{2, 4}, {inf, 4}}, 1, true},
		{"rank on a bucket bound", 0.5, []bucket{{1, 2}, {2, 4}, {inf, 4}}, 1, true},
		{"rank in +Inf: highest finite bound", 0.99, []bucket{{1, 1}, {60, 1}, {inf, 2}}, 60, true},
		{"first bound not positive", 0.5, []bucket{{0, 4}, {inf, 4}}, 0, true},
		{"q out of range", 1.5, three, 0, false},
	} {
		got, ok := bucketQuantile(tc.q, tc.b)
		if ok != tc.ok || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// routerMetrics registers the three series as the activator does (same
// names, labels and buckets) on a registry of their own.
type routerMetrics struct {
	reg         *prometheus.Registry
	resumes     *prometheus.CounterVec
	suspensions *prometheus.CounterVec
	latency     prometheus.Histogram
}

func newRouterMetrics() *routerMetrics {
	m := &routerMetrics{
		reg:         prometheus.NewRegistry(),
		resumes:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricResumes, Help: "h"}, []string{"result"}),
		suspensions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricSuspensions, Help: "h"}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: metricResumeLatency, Help: "h",
			Buckets: []float64{.05, .1, .25, .5, .75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60}}),
	}
	m.reg.MustRegister(m.resumes, m.suspensions, m.latency, prometheus.NewGauge(prometheus.GaugeOpts{Name: "unrelated", Help: "h"}))
	return m
}

// TestLastHour: figures count from the start until the ring holds an
// hour, then over the last hour only; an hour without wake-ups has no
// latency.
func TestLastHour(t *testing.T) {
	m := newRouterMetrics()
	s := newStats(nil, m.reg, slog.New(slog.DiscardHandler))
	if s.lastHour.Load() != nil {
		t.Fatal("figures before any sample")
	}
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	m.resumes.WithLabelValues("ok").Add(3)
	m.resumes.WithLabelValues("error").Add(5) // not a resume
	m.suspensions.WithLabelValues("idle").Inc()
	for _, v := range []float64{.3, .4, .6} {
		m.latency.Observe(v)
	}
	s.sampleHour(t0)
	f := s.lastHour.Load()
	if !f.SinceStart || f.WindowSeconds != 0 || f.Resumes != 3 || f.IdleSuspensions != 1 ||
		f.ResumeP50Seconds == nil || math.Abs(*f.ResumeP50Seconds-0.4375) > 1e-9 || math.Abs(*f.ResumeP99Seconds-0.7425) > 1e-9 {
		t.Fatalf("since start: %+v p50 %v", f, f.ResumeP50Seconds)
	}
	for i := 1; i < hourSamples; i++ {
		if i == 30 {
			m.resumes.WithLabelValues("ok").Inc()
			m.latency.Observe(100) // beyond the last bound: +Inf
		}
		s.sampleHour(t0.Add(time.Duration(i) * time.Minute))
	}
	// The ring is full: the oldest sample (t0) is the base.
	f = s.lastHour.Load()
	if f.SinceStart || f.WindowSeconds != 3600 || f.Resumes != 1 || f.IdleSuspensions != 0 || *f.ResumeP50Seconds != 60 || *f.ResumeP99Seconds != 60 {
		t.Fatalf("full hour: %+v", f)
	}
	// An hour later, nothing happened in the window.
	for i := hourSamples; i < 2*hourSamples; i++ {
		s.sampleHour(t0.Add(time.Duration(i) * time.Minute))
	}
	f = s.lastHour.Load()
	if f.Resumes != 0 || f.ResumeP50Seconds != nil || f.ResumeP99Seconds != nil {
		t.Fatalf("quiet hour: %+v", f)
	}
}

// fakeCounts is an Activity with request counts and events.
type fakeCounts struct {
	*fakeActivity
	counts map[resolver.Key]uint64
	events map[resolver.Key][]sandboxEvent
}

func (f *fakeCounts) Requests(visit func(resolver.Key, uint64)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, n := range f.counts {
		visit(resolver.Key{Namespace: k.Namespace, Name: k.Name, UID: "uid-is-dropped"}, n)
	}
}

func (f *fakeCounts) VisitEvents(k resolver.Key, visit func(time.Time, string, string, int)) {
	for _, e := range f.events[k] {
		visit(e.At, e.Kind, e.Text, e.Count)
	}
}

func (f *fakeCounts) set(k resolver.Key, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[k] = n
}

// TestBusiest: rates over the last interval, busiest first; a count that
// restarted counts whole; the viewer sees its own busiest, at most ten;
// at most maxBusiestKept are kept.
func TestBusiest(t *testing.T) {
	fc := &fakeCounts{fakeActivity: newFakeActivity(0), counts: map[resolver.Key]uint64{}}
	var r requestRates
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	fc.set(key("alpha", "a"), 100)
	fc.set(key("alpha", "b"), 500)
	fc.set(key("beta", "c"), 1000)
	if b := r.sample(fc, t0); b.IntervalSeconds != 0 || len(b.Sandboxes) != 0 {
		t.Fatalf("first sample: %+v", b)
	}
	fc.set(key("alpha", "a"), 300) // +200 in 10s
	fc.set(key("alpha", "b"), 50)  // restarted: 50
	fc.set(key("beta", "c"), 2000) // +1000
	fc.set(key("beta", "idle"), 0) // nothing
	b := r.sample(fc, t0.Add(10*time.Second))
	want := []busySandbox{{"beta", "c", 100}, {"alpha", "a", 20}, {"alpha", "b", 5}}
	if b.IntervalSeconds != 10 || fmt.Sprint(b.Sandboxes) != fmt.Sprint(want) {
		t.Fatalf("rates %+v", b)
	}
	if v := b.visibleTo(newVisibility(t.Context(), hiding("beta"))); fmt.Sprint(v.Sandboxes) != fmt.Sprint(want[1:]) {
		t.Fatalf("hiding beta: %+v", v)
	}

	for i := range 2 * maxBusiestKept {
		fc.set(key("many", fmt.Sprint("s", i)), uint64(i+1))
	}
	b = r.sample(fc, t0.Add(20*time.Second))
	b = r.sample(fc, t0.Add(30*time.Second)) // no change: nobody is busy
	if len(b.Sandboxes) != 0 {
		t.Fatalf("no requests, %d busy", len(b.Sandboxes))
	}
	for i := range 2 * maxBusiestKept {
		fc.set(key("many", fmt.Sprint("s", i)), uint64(2*(i+1)))
	}
	b = r.sample(fc, t0.Add(40*time.Second))
	if len(b.Sandboxes) != maxBusiestKept || b.Sandboxes[0].Name != fmt.Sprint("s", 2*maxBusiestKept-1) {
		t.Fatalf("%d kept, first %+v", len(b.Sandboxes), b.Sandboxes[0])
	}
	if v := b.visibleTo(newVisibility(t.Context(), nil)); len(v.Sandboxes) != maxBusiest {
		t.Fatalf("%d shown", len(v.Sandboxes))
	}
}

// TestActivityFields: api/overview carries the busiest sandboxes and the
// last hour, filtered by the viewer; the one-sandbox answer its events
// and examples.
func TestActivityFields(t *testing.T) {
	fc := &fakeCounts{fakeActivity: newFakeActivity(0), counts: map[resolver.Key]uint64{}, events: map[resolver.Key][]sandboxEvent{}}
	at := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	fc.events[key("alpha", "web-1")] = []sandboxEvent{
		{At: at.Add(time.Second), Kind: "released", Text: "released 2 held request(s) after 1.20s", Count: 1},
		{At: at, Kind: "wake", Text: "wake-up began", Count: 1},
	}
	fc.set(key("alpha", "web-1"), 0)
	fc.set(key("beta", "cache"), 0)
	m := newRouterMetrics()
	m.resumes.WithLabelValues("ok").Add(2)
	m.latency.Observe(1.2)
	h := startWith(t, Options{Sandboxes: fixture(), Activity: fc, Metrics: m.reg, RouterURL: "https://router.example.com:8443", BaseDomain: "sandboxes.example.com",
		Viewer: headerViewer}, func(h *Handler) { h.stats.now = func() time.Time { return at } })
	eventually(t, "the first samples", func() bool { return h.stats.busiest.Load() != nil && h.stats.lastHour.Load() != nil })
	fc.set(key("alpha", "web-1"), 30)
	fc.set(key("beta", "cache"), 300)
	h.stats.sampleRates(at.Add(10 * time.Second))

	overviewAs := func(hide string) overview {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/api/overview", nil)
		req.Header.Set("X-Hide", hide)
		h.ServeHTTP(rec, req)
		var o overview
		if err := json.Unmarshal(rec.Body.Bytes(), &o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	o := overviewAs("beta")
	if o.Busiest == nil || o.Busiest.IntervalSeconds != 10 || len(o.Busiest.Sandboxes) != 1 || o.Busiest.Sandboxes[0] != (busySandbox{"alpha", "web-1", 3}) {
		t.Fatalf("busiest %+v", o.Busiest)
	}
	// The last hour is the whole replica's: only for a viewer who may list
	// every namespace.
	if o.LastHour != nil {
		t.Fatalf("a viewer hiding beta sees the replica's last hour: %+v", o.LastHour)
	}
	o = overviewAs("")
	if o.LastHour == nil || !o.LastHour.SinceStart || o.LastHour.Resumes != 2 || o.LastHour.ResumeP50Seconds == nil || *o.LastHour.ResumeP50Seconds != 1.25 {
		t.Fatalf("last hour %+v", o.LastHour)
	}

	var a sandboxAnswer
	get(t, h, "/api/sandboxes/alpha/web-1", &a)
	if len(a.Events) != 2 || a.Events[0].Kind != "released" || !a.Events[1].At.Equal(at) {
		t.Fatalf("events %+v", a.Events)
	}
	if len(a.Examples) != 2 || a.Examples[0].Command != "curl https://web-1.alpha.sandboxes.example.com:8443/" ||
		a.Examples[1].Command != `curl -s https://router.example.com:8443/sandbox-router/v1/tokens -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"namespace":"alpha","name":"web-1","ttl":"10m"}'` {
		t.Fatalf("examples %+v", a.Examples)
	}

	// Without the optional sources, none of it.
	h = start(t, Options{Sandboxes: fixture(), Activity: newFakeActivity(0)})
	o = overview{}
	get(t, h, "/api/overview", &o)
	a = sandboxAnswer{}
	get(t, h, "/api/sandboxes/alpha/web-1", &a)
	if o.Busiest != nil || o.LastHour != nil || a.Events != nil || len(a.Examples) != 1 {
		t.Fatalf("without sources: %+v %+v %+v", o.Busiest, o.LastHour, a)
	}
	if _, err := New(Options{Sandboxes: fixture(), BaseDomain: "bad_domain"}); err == nil {
		t.Fatal("a bad BaseDomain was accepted")
	}
}
