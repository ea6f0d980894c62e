package dashboard

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// How often the samplers look: request counts every rateInterval, the
// registry every hourInterval (hourSamples of which make the hour).
const (
	rateInterval = 10 * time.Second
	hourInterval = time.Minute
)

// stats samples what the overview says about activity: the busiest
// sandboxes (from the activator's request counts) and the last hour's
// resumes, idle suspensions and resume latency (from the router's own
// metrics). The samples are taken by one goroutine (run), on its clock;
// answers read the latest figures without a lock, so the overview in
// every event message costs nothing more.
type stats struct {
	counts  RequestCounts       // nil: no busiest sandboxes
	metrics prometheus.Gatherer // nil: no last-hour figures
	log     *slog.Logger
	now     func() time.Time // the clock of the first samples (tests)

	mu     sync.Mutex // one sampler at a time (run, or a test)
	rates  requestRates
	window hourWindow

	busiest  atomic.Pointer[busiest]
	lastHour atomic.Pointer[lastHour]
}

func newStats(act Activity, g prometheus.Gatherer, log *slog.Logger) *stats {
	s := &stats{metrics: g, log: log, now: time.Now}
	if rc, ok := act.(RequestCounts); ok {
		s.counts = rc
	}
	return s
}

// enabled reports whether there is anything to sample.
func (s *stats) enabled() bool { return s.counts != nil || s.metrics != nil }

// sampleRates takes a sample of the request counts at now.
func (s *stats) sampleRates(now time.Time) {
	if s.counts == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busiest.Store(s.rates.sample(s.counts, now))
}

// sampleHour gathers the registry at now into the hour's ring.
func (s *stats) sampleHour(now time.Time) {
	if s.metrics == nil {
		return
	}
	smp, err := gatherSample(s.metrics, now)
	if err != nil {
		s.log.Warn("dashboard: gathering the router's metrics failed", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.window.add(smp)
	s.lastHour.Store(s.window.figures())
}

// run samples until ctx ends: both at once, then rates every
// rateInterval and the registry every hourInterval.
func (s *stats) run(ctx context.Context) {
	now := s.now()
	s.sampleRates(now)
	s.sampleHour(now)
	rates := time.NewTicker(rateInterval)
	defer rates.Stop()
	hour := time.NewTicker(hourInterval)
	defer hour.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-rates.C:
			s.sampleRates(now)
		case now := <-hour.C:
			s.sampleHour(now)
		}
	}
}
