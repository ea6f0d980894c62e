package tffi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The router's metrics this package reads.
const (
	metricWakePhase = "sandbox_router_activator_wake_phase_seconds"
	metricReleases  = "sandbox_router_activator_releases_total"
)

// Phases are the router's wake-up phases in their order: the time from
// the first held request to the resume patch sent and acknowledged, the
// new pod seen, its address seen, the router's first successful probe of
// it, Kubernetes' Ready seen, and the first released request's response
// head.
var Phases = []string{"patch_sent", "patch_acked", "pod_seen", "address_seen", "probe_ok", "ready_seen", "first_byte"}

// bucket is a histogram bucket: n observations at most le.
type bucket struct{ le, n float64 }

// histogram is one series of cumulative buckets, sorted by le (+Inf last).
type histogram struct {
	buckets []bucket
	count   float64
}

// snapshot is what the router's /metrics said of its wake-ups.
type snapshot struct {
	phases   map[string]histogram // by phase
	releases map[string]float64   // by what released: probe, ready
}

// sample is one line of the text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseSnapshot reads the wake-up metrics from a text exposition.
func parseSnapshot(r io.Reader) (snapshot, error) {
	s := snapshot{phases: map[string]histogram{}, releases: map[string]float64{}}
	lines := bufio.NewScanner(r)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	for lines.Scan() {
		line := strings.TrimSpace(lines.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if !strings.HasPrefix(line, metricWakePhase) && !strings.HasPrefix(line, metricReleases) {
			continue
		}
		sm, err := parseSample(line)
		if err != nil {
			return snapshot{}, err
		}
		switch sm.name {
		case metricWakePhase + "_bucket":
			le, err := strconv.ParseFloat(sm.labels["le"], 64)
			if err != nil {
				return snapshot{}, fmt.Errorf("metrics: %q: le: %w", line, err)
			}
			h := s.phases[sm.labels["phase"]]
			h.buckets = append(h.buckets, bucket{le: le, n: sm.value})
			s.phases[sm.labels["phase"]] = h
		case metricWakePhase + "_count":
			h := s.phases[sm.labels["phase"]]
			h.count = sm.value
			s.phases[sm.labels["phase"]] = h
		case metricReleases:
			s.releases[sm.labels["on"]] = sm.value
		}
	}
	if err := lines.Err(); err != nil {
		return snapshot{}, fmt.Errorf("metrics: %w", err)
	}
	for p, h := range s.phases {
		slices.SortFunc(h.buckets, func(a, b bucket) int { return cmpFloat(a.le, b.le) })
		s.phases[p] = h
	}
	return s, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseSample reads `name{label="value",...} value [timestamp]`.
func parseSample(line string) (sample, error) {
	sm := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return sample{}, fmt.Errorf("metrics: %q: no value", line)
	}
	sm.name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, " ,")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			eq := strings.Index(line, `="`)
			if eq < 0 {
				return sample{}, fmt.Errorf("metrics: bad labels in %s", sm.name)
			}
			name := strings.TrimSpace(line[:eq])
			line = line[eq+2:]
			var v strings.Builder
			closed := false
			for j := 0; j < len(line); j++ {
				c := line[j]
				if c == '\\' && j+1 < len(line) {
					j++
					switch line[j] {
					case 'n':
						v.WriteByte('\n')
					default:
						v.WriteByte(line[j])
					}
					continue
				}
				if c == '"' {
					line, closed = line[j+1:], true
					break
				}
				v.WriteByte(c)
			}
			if !closed {
				return sample{}, fmt.Errorf("metrics: unterminated label value in %s", sm.name)
			}
			sm.labels[name] = v.String()
		}
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return sample{}, fmt.Errorf("metrics: %s: no value", sm.name)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return sample{}, fmt.Errorf("metrics: %s: %w", sm.name, err)
	}
	sm.value = v
	return sm, nil
}

// minus is what happened between before and s (a counter that went
// down, as after a restart of the router, counts from zero).
func (s snapshot) minus(before snapshot) snapshot {
	d := snapshot{phases: map[string]histogram{}, releases: map[string]float64{}}
	for on, v := range s.releases {
		d.releases[on] = delta(v, before.releases[on])
	}
	for p, h := range s.phases {
		b := before.phases[p]
		dh := histogram{count: delta(h.count, b.count)}
		for _, bk := range h.buckets {
			prev := 0.0
			for _, x := range b.buckets {
				if x.le == bk.le {
					prev = x.n
				}
			}
			dh.buckets = append(dh.buckets, bucket{le: bk.le, n: delta(bk.n, prev)})
		}
		d.phases[p] = dh
	}
	return d
}

func delta(after, before float64) float64 {
	if after < before {
		return after
	}
	return after - before
}

// quantile estimates the q-quantile as Prometheus' histogram_quantile
// does: linear within the bucket that holds the rank (from 0 for the
// first), the highest finite bound when the rank falls in +Inf. NaN
// without observations.
func (h histogram) Quantile(q float64) float64 {
	if len(h.buckets) == 0 {
		return math.NaN()
	}
	total := h.buckets[len(h.buckets)-1].n
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, b := range h.buckets {
		if b.n >= rank && b.n > below {
			if math.IsInf(b.le, 1) {
				if i == 0 {
					return math.NaN()
				}
				return h.buckets[i-1].le
			}
			return lower + (b.le-lower)*(rank-below)/(b.n-below)
		}
		lower, below = b.le, b.n
	}
	return lower
}

// scrape reads the router's metrics.
func scrape(ctx context.Context, client *http.Client, url string) (snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return snapshot{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return snapshot{}, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return snapshot{}, fmt.Errorf("metrics: %s answered %s", url, resp.Status)
	}
	return parseSnapshot(resp.Body)
}
