package tffi

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Wakeup is one measured wake-up. The times are this process's clock.
type Wakeup struct {
	// Sent is when the request was sent; FirstByte when the first byte
	// of its response arrived; Status its status.
	Sent, FirstByte time.Time
	Status          int
	// Pod is the new pod's name. PodSeen, AddressSeen and ReadySeen are
	// when this process's Pod watch first saw it, with its address, and
	// Ready (zero: not seen).
	Pod                             string
	PodSeen, AddressSeen, ReadySeen time.Time
}

// Hold is the time the client waited: first byte - sent.
func (w Wakeup) Hold() time.Duration { return w.FirstByte.Sub(w.Sent) }

// AfterReady is first byte - Ready seen: negative when the request was
// served before Kubernetes' Ready reached this process's watch.
func (w Wakeup) AfterReady() time.Duration { return w.FirstByte.Sub(w.ReadySeen) }

// ModeResult is one mode's wake-ups.
type ModeResult struct {
	Mode    string
	Wakeups []Wakeup
	// Router is the router's account of the mode's wake-ups (nil without
	// Config.Metrics).
	Router *RouterPhases
}

// RouterPhases is what the router's metrics counted while a mode ran:
// every wake-up that router replica handled in that time, not only
// ours.
type RouterPhases struct {
	// Count is the observations of each phase.
	Count map[string]float64
	// P50 and P99 are each phase's quantiles, estimated from the
	// histogram's buckets (absent without observations).
	P50, P99 map[string]time.Duration
	// Releases counts the wake-ups by what released their requests:
	// probe or ready.
	Releases map[string]float64
}

// Report is a whole run.
type Report struct {
	Namespace, Sandbox, Router string
	// Version is the Sandbox API version used to suspend it.
	Version string
	Modes   []ModeResult
}

func routerPhases(d snapshot) *RouterPhases {
	r := &RouterPhases{Count: map[string]float64{}, P50: map[string]time.Duration{}, P99: map[string]time.Duration{}, Releases: d.releases}
	for p, h := range d.phases {
		r.Count[p] = h.count
		if q := h.Quantile(0.5); !math.IsNaN(q) {
			r.P50[p] = seconds(q)
		}
		if q := h.Quantile(0.99); !math.IsNaN(q) {
			r.P99[p] = seconds(q)
		}
	}
	return r
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Quantile is the nearest-rank q-quantile (0 for no values).
func Quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }

// stats is "p50 / p99 / max" in ms.
func stats(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	return ms(Quantile(d, 0.5)) + " / " + ms(Quantile(d, 0.99)) + " / " + ms(slices.Max(d))
}

// since is each wake-up's t - sent, for those where t was seen.
func since(ws []Wakeup, t func(Wakeup) time.Time) []time.Duration {
	var d []time.Duration
	for _, w := range ws {
		if at := t(w); !at.IsZero() {
			d = append(d, at.Sub(w.Sent))
		}
	}
	return d
}

// Markdown is the report as tables.
func (r *Report) Markdown() string {
	var b strings.Builder
	n := 0
	if len(r.Modes) > 0 {
		n = len(r.Modes[0].Wakeups)
	}
	fmt.Fprintf(&b, "### TFFI of %s/%s through %s (Sandbox %s, %d wake-ups per mode)\n\n", r.Namespace, r.Sandbox, r.Router, r.Version, n)
	b.WriteString("ms, p50 / p99 / max. first byte - Ready seen is negative when the request was served before Kubernetes' Ready reached this command's watch.\n\n")
	b.WriteString("| mode | wake-ups | first byte - sent | first byte - Ready seen | served before Ready |\n| --- | ---: | --- | --- | ---: |\n")
	for _, m := range r.Modes {
		var hold, after []time.Duration
		early := 0
		for _, w := range m.Wakeups {
			hold = append(hold, w.Hold())
			if !w.ReadySeen.IsZero() {
				after = append(after, w.AfterReady())
				if w.AfterReady() < 0 {
					early++
				}
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %d of %d |\n", m.Mode, len(m.Wakeups), stats(hold), stats(after), early, len(after))
	}
	b.WriteString("\nThis command's Pod watch, ms from the request sent, p50 / p99 / max:\n\n")
	b.WriteString("| mode | pod seen | address seen | Ready seen | first byte |\n| --- | --- | --- | --- | --- |\n")
	for _, m := range r.Modes {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", m.Mode,
			stats(since(m.Wakeups, func(w Wakeup) time.Time { return w.PodSeen })),
			stats(since(m.Wakeups, func(w Wakeup) time.Time { return w.AddressSeen })),
			stats(since(m.Wakeups, func(w Wakeup) time.Time { return w.ReadySeen })),
			stats(since(m.Wakeups, func(w Wakeup) time.Time { return w.FirstByte })))
	}
	withRouter := slices.ContainsFunc(r.Modes, func(m ModeResult) bool { return m.Router != nil })
	if withRouter {
		b.WriteString("\nThe router's wake-up phases (its /metrics before and after each mode: every wake-up this replica handled meanwhile), ms from the first held request, p50 / p99 estimated from the histogram's buckets:\n\n")
		b.WriteString("| mode | wake-ups | released on probe / ready |")
		for _, p := range Phases {
			b.WriteString(" " + p + " |")
		}
		b.WriteString("\n| --- | ---: | --- |" + strings.Repeat(" --- |", len(Phases)) + "\n")
		for _, m := range r.Modes {
			if m.Router == nil {
				continue
			}
			rp := m.Router
			fmt.Fprintf(&b, "| %s | %.0f | %.0f / %.0f |", m.Mode, rp.Count["first_byte"], rp.Releases[ModeProbe], rp.Releases[ModeReady])
			for _, p := range Phases {
				p50, ok50 := rp.P50[p]
				p99, ok99 := rp.P99[p]
				if !ok50 || !ok99 {
					b.WriteString(" - |")
					continue
				}
				fmt.Fprintf(&b, " %s / %s |", ms(p50), ms(p99))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\nThe moment the sandbox's server began to listen is not observable from outside the pod; ")
	if withRouter {
		b.WriteString("in the probe mode the router's probe_ok is the nearest observable, within its --probe-interval (10ms by default) after it.\n")
	} else {
		b.WriteString("with -metrics, the router's probe_ok phase approximates it within its --probe-interval.\n")
	}
	return b.String()
}
