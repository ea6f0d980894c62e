package dashboard

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The router's own series the last-hour figures come from (activator
// metrics, on the router's private registry).
const (
	metricResumes       = "sandbox_router_activator_resumes_total"
	metricSuspensions   = "sandbox_router_activator_suspensions_total"
	metricResumeLatency = "sandbox_router_activator_resume_duration_seconds"
)

// hourSamples is the ring of the last-hour figures: one sample a minute,
// 61 of them, so that the newest and the oldest are an hour apart.
const hourSamples = 61

// metricSample is what one gathering of the registry found.
type metricSample struct {
	at              time.Time
	resumes         float64 // resumes_total{result="ok"}
	idleSuspensions float64 // suspensions_total{reason="idle"}
	latency         []bucket
}

// bucket is a histogram bucket: the cumulative count of observations at
// most le. The last bucket of a histogram is +Inf.
type bucket struct{ le, count float64 }

// gatherSample reads the three series from the registry. A series it
// does not find counts as zero: the figures are then zero, not wrong.
func gatherSample(g prometheus.Gatherer, now time.Time) (metricSample, error) {
	s := metricSample{at: now}
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return s, err
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case metricResumes:
			s.resumes = counterWith(mf, "result", "ok")
		case metricSuspensions:
			s.idleSuspensions = counterWith(mf, "reason", "idle")
		case metricResumeLatency:
			if ms := mf.GetMetric(); len(ms) > 0 {
				s.latency = bucketsOf(ms[0].GetHistogram())
			}
		}
	}
	return s, nil
}

func counterWith(mf *dto.MetricFamily, label, value string) float64 {
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label && lp.GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// bucketsOf copies a classic histogram's buckets, ending with +Inf (which
// the exposition may leave implicit: it is the sample count).
func bucketsOf(h *dto.Histogram) []bucket {
	out := make([]bucket, 0, len(h.GetBucket())+1)
	for _, b := range h.GetBucket() {
		out = append(out, bucket{le: b.GetUpperBound(), count: float64(b.GetCumulativeCount())})
	}
	if len(out) == 0 || !math.IsInf(out[len(out)-1].le, 1) {
		out = append(out, bucket{le: math.Inf(1), count: float64(h.GetSampleCount())})
	}
	return out
}

// hourWindow keeps the last hourSamples samples.
type hourWindow struct {
	ring [hourSamples]metricSample
	next int // where the next sample goes
	n    int
}

func (w *hourWindow) add(s metricSample) {
	w.ring[w.next] = s
	w.next = (w.next + 1) % hourSamples
	w.n = min(w.n+1, hourSamples)
}

// lastHour is what the overview says about the last hour.
type lastHour struct {
	// SinceStart: the router has run for less than the window, and the
	// figures count from its start (its counters start at zero then).
	SinceStart bool `json:"sinceStart"`
	// WindowSeconds is the span counted, when not since the start.
	WindowSeconds   float64 `json:"windowSeconds,omitempty"`
	Resumes         int64   `json:"resumes"`
	IdleSuspensions int64   `json:"idleSuspensions"`
	// ResumeP50Seconds and ResumeP99Seconds are the resume latencies
	// (first held request to first release) at those quantiles,
	// interpolated within buckets as PromQL's histogram_quantile does;
	// absent without a wake-up in the window.
	ResumeP50Seconds *float64 `json:"resumeP50Seconds,omitempty"`
	ResumeP99Seconds *float64 `json:"resumeP99Seconds,omitempty"`
}

// figures compares the newest sample with the one an hour older, or with
// zero while the ring is not yet full; nil before any sample.
func (w *hourWindow) figures() *lastHour {
	if w.n == 0 {
		return nil
	}
	newest := &w.ring[(w.next+hourSamples-1)%hourSamples]
	var base metricSample // zero: the start of the process
	out := &lastHour{SinceStart: true}
	if w.n == hourSamples {
		base = w.ring[w.next]
		out.SinceStart = false
		out.WindowSeconds = newest.at.Sub(base.at).Seconds()
	}
	out.Resumes = int64(math.Round(increase(newest.resumes, base.resumes)))
	out.IdleSuspensions = int64(math.Round(increase(newest.idleSuspensions, base.idleSuspensions)))
	delta := bucketIncrease(newest.latency, base.latency)
	if v, ok := bucketQuantile(0.5, delta); ok {
		out.ResumeP50Seconds = &v
	}
	if v, ok := bucketQuantile(0.99, delta); ok {
		out.ResumeP99Seconds = &v
	}
	return out
}

// increase is a counter's growth from old to cur; a counter that went
// down was reset, and then all of cur is growth.
func increase(cur, old float64) float64 {
	if cur < old {
		return cur
	}
	return cur - old
}

// bucketIncrease is each bucket's growth; old buckets that do not match
// (another layout, or none) count as zero.
func bucketIncrease(cur, old []bucket) []bucket {
	out := make([]bucket, len(cur))
	same := len(old) == len(cur)
	for i, b := range cur {
		out[i] = b
		if same && old[i].le == b.le {
			out[i].count = increase(b.count, old[i].count)
		}
	}
	return out
}

// bucketQuantile estimates the q-quantile of the observations counted in
// cumulative buckets ending with +Inf, as PromQL's histogram_quantile
// does: linear interpolation within the bucket the rank falls in, from 0
// for the first bucket (when its bound is positive); a rank in the +Inf
// bucket gives the highest finite bound. false without observations or
// without a +Inf bucket.
func bucketQuantile(q float64, b []bucket) (float64, bool) {
	if len(b) < 2 || !math.IsInf(b[len(b)-1].le, 1) || q < 0 || q > 1 {
		return 0, false
	}
	total := b[len(b)-1].count
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	i := 0
	for i < len(b)-1 && b[i].count < rank {
		i++
	}
	if i == len(b)-1 {
		return b[len(b)-2].le, true
	}
	if i == 0 && b[0].le <= 0 {
		return b[0].le, true
	}
	start, end, count := 0.0, b[i].le, b[i].count
	if i > 0 {
		start = b[i-1].le
		count -= b[i-1].count
		rank -= b[i-1].count
	}
	if count <= 0 {
		return end, true
	}
	return start + (end-start)*(rank/count), true
}
