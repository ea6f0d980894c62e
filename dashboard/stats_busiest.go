package dashboard

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Bounds of the busiest sandboxes: those shown, and those kept between
// samples so that a viewer who sees only some namespaces still finds its
// own busiest among them.
const (
	maxBusiest     = 10
	maxBusiestKept = 500
)

// busySandbox is a sandbox and its request rate on this replica.
type busySandbox struct {
	Namespace         string  `json:"namespace"`
	Name              string  `json:"name"`
	RequestsPerSecond float64 `json:"requestsPerSecond"`
}

// busiest is the overview's list of the busiest sandboxes.
type busiest struct {
	// IntervalSeconds is the interval the rates are measured over; 0
	// until two samples were taken.
	IntervalSeconds float64       `json:"intervalSeconds"`
	Sandboxes       []busySandbox `json:"sandboxes"`
}

// requestRates turns request counts into rates between two samples. It
// keeps only the previous sample's counts (one per sandbox the activator
// tracks, which follows the cluster) and the busiest maxBusiestKept.
type requestRates struct {
	prev   map[resolver.Key]uint64
	prevAt time.Time
}

// sample reads the counts at now and returns the busiest sandboxes since
// the previous sample, busiest first (nil at the first sample).
func (r *requestRates) sample(rc RequestCounts, now time.Time) *busiest {
	cur := make(map[resolver.Key]uint64, len(r.prev))
	rc.Requests(func(k resolver.Key, total uint64) {
		cur[resolver.Key{Namespace: k.Namespace, Name: k.Name}] = total
	})
	prev, prevAt := r.prev, r.prevAt
	r.prev, r.prevAt = cur, now
	if prev == nil {
		return &busiest{Sandboxes: []busySandbox{}}
	}
	secs := now.Sub(prevAt).Seconds()
	out := &busiest{IntervalSeconds: secs, Sandboxes: []busySandbox{}}
	if secs <= 0 {
		return out
	}
	for k, n := range cur {
		d := n
		if old := prev[k]; n >= old {
			d = n - old
		} // else: the count restarted, all of n is new
		if d > 0 {
			out.Sandboxes = append(out.Sandboxes, busySandbox{Namespace: k.Namespace, Name: k.Name, RequestsPerSecond: float64(d) / secs})
		}
	}
	slices.SortFunc(out.Sandboxes, func(a, b busySandbox) int {
		if c := cmp.Compare(b.RequestsPerSecond, a.RequestsPerSecond); c != 0 {
			return c
		}
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if len(out.Sandboxes) > maxBusiestKept {
		out.Sandboxes = slices.Clip(out.Sandboxes[:maxBusiestKept])
	}
	return out
}

// visibleTo is the busiest maxBusiest the viewer may see.
func (b *busiest) visibleTo(vis *visibility) *busiest {
	out := &busiest{IntervalSeconds: b.IntervalSeconds, Sandboxes: []busySandbox{}}
	for _, s := range b.Sandboxes {
		if len(out.Sandboxes) == maxBusiest {
			break
		}
		if vis.may(s.Namespace) {
			out.Sandboxes = append(out.Sandboxes, s)
		}
	}
	return out
}
