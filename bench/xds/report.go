package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// result is one run's figures.
type result struct {
	Config      runConfig `json:"config"`
	FillSeconds float64   `json:"fill_seconds"`
	// Resident memory of the control-plane process: with the resolver
	// filled and nothing subscribed, after the initial sync, at the end,
	// and its peak (VmHWM).
	RSSBeforeKiB    int64 `json:"rss_before_kib"`
	RSSAfterSyncKiB int64 `json:"rss_after_sync_kib"`
	RSSEndKiB       int64 `json:"rss_end_kib"`
	HWMKiB          int64 `json:"hwm_kib"`
	// Live heap after a forced GC: with the resolver alone, and with every
	// client synced.
	HeapBeforeBytes    int64        `json:"heap_before_bytes"`
	HeapAfterSyncBytes int64        `json:"heap_after_sync_bytes"`
	ColdEmpty          *coldFigures `json:"cold_empty,omitempty"`
	Initial            initialStats `json:"initial"`
	Flips              flipStats    `json:"flips"`
	ColdWarm           *coldFigures `json:"cold_warm,omitempty"`
	// Cuts says what a budget cut short.
	Cuts []string `json:"cuts,omitempty"`
}

type coldFigures struct {
	Names     int     `json:"names"`
	Seconds   float64 `json:"seconds"` // dial to the last name acknowledged
	Bytes     int64   `json:"bytes"`   // every response, proto.Size
	Responses int64   `json:"responses"`
	Complete  bool    `json:"complete"`
}

type initialStats struct {
	Clients    int     `json:"clients"`
	Synced     int     `json:"synced"`
	Seconds    float64 `json:"seconds"`
	Bytes      int64   `json:"bytes"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

type flipStats struct {
	Count         int     `json:"count"`
	Seconds       float64 `json:"seconds"`        // first flip to last
	WindowSeconds float64 `json:"window_seconds"` // first flip to the end of the drain
	// Subscribed flips are those of sandboxes some client holds;
	// SubscriberFlips counts each (flip, holder) pair.
	Subscribed      int `json:"subscribed"`
	SubscriberFlips int `json:"subscriber_flips"`
	Censored        int `json:"censored"` // pairs never acknowledged
	// Latency in ms from the feed to the last holder's ACK; -1: beyond
	// the window (not delivered).
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// Bytes of the responses received in the window, on the side of the
	// holders and of everyone else.
	SubscribedBytes        int64   `json:"subscribed_bytes"`
	OtherBytes             int64   `json:"other_bytes"`
	OtherVirtualHosts      int64   `json:"other_virtual_hosts"`
	BytesPerSubscriberFlip float64 `json:"bytes_per_subscriber_flip"`
	OtherBytesPerFlip      float64 `json:"other_bytes_per_flip"`
	CPUSeconds             float64 `json:"cpu_seconds"`
	CPUMsPerFlip           float64 `json:"cpu_ms_per_flip"`
}

// apiResult is BenchmarkAPIServer's figures.
type apiResult struct {
	Sandboxes      int     `json:"sandboxes"`
	Clients        int     `json:"clients"`
	Names          int     `json:"names"`
	CreateSeconds  float64 `json:"create_seconds"`
	SyncSeconds    float64 `json:"sync_seconds"` // initial sync of the clients
	Rate           float64 `json:"rate"`
	Seconds        float64 `json:"seconds"`
	Flips          int     `json:"flips"`
	Suspends       int     `json:"suspends"`
	Resumes        int     `json:"resumes"`
	Censored       int     `json:"censored"`
	AckP50Ms       float64 `json:"ack_p50_ms"`
	AckP90Ms       float64 `json:"ack_p90_ms"`
	AckP99Ms       float64 `json:"ack_p99_ms"`
	AckMaxMs       float64 `json:"ack_max_ms"`
	ResolverP50Ms  float64 `json:"resolver_p50_ms"`
	ResolverP99Ms  float64 `json:"resolver_p99_ms"`
	XDSShareP50Ms  float64 `json:"xds_share_p50_ms"`
	XDSShareP99Ms  float64 `json:"xds_share_p99_ms"`
	BytesPerFlip   float64 `json:"bytes_per_subscriber_flip"`
	OtherBytes     int64   `json:"other_bytes"`
	ResumeP50Ms    float64 `json:"resume_p50_ms"`
	SuspendP50Ms   float64 `json:"suspend_p50_ms"`
	WriteErrors    int     `json:"write_errors"`
	AchievedPerSec float64 `json:"achieved_per_second"`
}

// reportMain is `bench-xds report FILE...`: the markdown tables of a run's
// JSON results (run results and, if present, the API server's).
func reportMain(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var runs []*result
	var api *apiResult
	for _, path := range fs.Args() {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(data), `"ack_p50_ms"`) {
			api = &apiResult{}
			if err := json.Unmarshal(data, api); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			continue
		}
		r := &result{}
		if err := json.Unmarshal(data, r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		runs = append(runs, r)
	}
	if len(runs) == 0 && api == nil {
		return errors.New("no results")
	}
	writeReport(os.Stdout, runs, api)
	return nil
}

func writeReport(w io.Writer, runs []*result, api *apiResult) {
	var ours *result
	for _, r := range runs {
		if r.Config.Impl == implOurs && r.Config.Overlap == 1 {
			ours = r
			break
		}
	}
	if len(runs) > 0 {
		fmt.Fprintln(w, "| run | sandboxes | clients x names | flips (rate x s) | latency p50 / p90 / p99 / max ms | bytes per flip per subscriber | bytes to others per flip | CPU ms per flip | RSS peak MiB (resolver alone) |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, r := range runs {
			c, fl := r.Config, r.Flips
			fmt.Fprintf(w, "| %s | %d | %s | %d (%g x %g) | %s / %s / %s / %s | %.0f | %.0f | %.3f | %.0f (%.0f) |\n",
				c.Label, c.Sandboxes, holdings(c), fl.Count, c.Rate, c.Seconds, ms(fl.P50Ms), ms(fl.P90Ms), ms(fl.P99Ms), ms(fl.MaxMs),
				fl.BytesPerSubscriberFlip, fl.OtherBytesPerFlip, fl.CPUMsPerFlip,
				float64(r.HWMKiB)/1024, float64(r.RSSBeforeKiB)/1024)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| run | initial sync of all clients: s / MiB / CPU s | live heap after it, over the resolver's: MiB (B per held name) | cold start: names | on the empty plane: s / MiB | names others hold: s / MiB |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: |")
		for _, r := range runs {
			names := "-"
			if r.ColdEmpty != nil {
				names = fmt.Sprintf("%d", r.ColdEmpty.Names)
			}
			heap := r.HeapAfterSyncBytes - r.HeapBeforeBytes
			held := r.Config.Clients * r.Config.Names * r.Config.Overlap
			if r.Config.Mode == modeWildcard {
				held = r.Config.Clients * r.Config.Sandboxes
			}
			fmt.Fprintf(w, "| %s | %s / %.1f / %.2f | %.0f (%.0f) | %s | %s | %s |\n", r.Config.Label,
				secs(r.Initial.Seconds, r.Initial.Synced < r.Initial.Clients), mib(r.Initial.Bytes), r.Initial.CPUSeconds,
				mib(heap), float64(heap)/float64(held), names, cold(r.ColdEmpty), cold(r.ColdWarm))
		}
		for _, r := range runs {
			for _, cut := range r.Cuts {
				fmt.Fprintf(w, "\n- %s: %s", r.Config.Label, cut)
			}
			if ours != nil && r != ours && r.Config.Seconds < ours.Config.Seconds {
				fmt.Fprintf(w, "\n- %s: flip phase %g s (ours: %g s), to bound the run", r.Config.Label, r.Config.Seconds, ours.Config.Seconds)
			}
		}
		fmt.Fprintln(w)
	}
	if ours != nil && len(runs) > 1 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| reference / ours | latency p50 | latency p99 | CPU per flip | bytes to others per flip | RSS peak | initial sync time | initial sync bytes |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, r := range runs {
			if r.Config.Impl == implOurs {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Config.Label,
				ratio(r.Flips.P50Ms, ours.Flips.P50Ms), ratio(r.Flips.P99Ms, ours.Flips.P99Ms),
				ratio(r.Flips.CPUMsPerFlip, ours.Flips.CPUMsPerFlip),
				absOrRatio(r.Flips.OtherBytesPerFlip, ours.Flips.OtherBytesPerFlip),
				ratio(float64(r.HWMKiB), float64(ours.HWMKiB)),
				ratio(r.Initial.Seconds, ours.Initial.Seconds), ratio(float64(r.Initial.Bytes), float64(ours.Initial.Bytes)))
		}
	}
	if ours != nil {
		fl := ours.Flips
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| target (issue 11), ours | measured | result |")
		fmt.Fprintln(w, "| --- | ---: | --- |")
		target(w, "latency p50 <= 50 ms", ms(fl.P50Ms)+" ms", fl.P50Ms >= 0 && fl.P50Ms <= 50)
		target(w, "latency p99 <= 250 ms", ms(fl.P99Ms)+" ms", fl.P99Ms >= 0 && fl.P99Ms <= 250)
		target(w, "bytes per flip per subscribed client <= 512", fmt.Sprintf("%.0f", fl.BytesPerSubscriberFlip), fl.BytesPerSubscriberFlip <= 512)
		target(w, "bytes to non-subscribed clients = 0", fmt.Sprintf("%d", fl.OtherBytes), fl.OtherBytes == 0)
		target(w, "control-plane CPU per flip <= 1 ms", fmt.Sprintf("%.3f ms", fl.CPUMsPerFlip), fl.CPUMsPerFlip <= 1)
		target(w, "control-plane resident memory <= 300 MiB (peak)", fmt.Sprintf("%.0f MiB", float64(ours.HWMKiB)/1024), ours.HWMKiB <= 300*1024)
		for _, cf := range []struct {
			name string
			f    *coldFigures
		}{{"nothing subscribed", ours.ColdEmpty}, {"names held by others", ours.ColdWarm}} {
			if cf.f == nil {
				continue
			}
			target(w, fmt.Sprintf("cold start, %d names (%s) <= 2 s", cf.f.Names, cf.name), fmt.Sprintf("%.2f s", cf.f.Seconds), cf.f.Complete && cf.f.Seconds <= 2)
			target(w, fmt.Sprintf("cold start, %d names (%s) <= 4 MiB", cf.f.Names, cf.name), fmt.Sprintf("%.2f MiB", float64(cf.f.Bytes)/(1<<20)), cf.f.Bytes <= 4<<20)
		}
	}
	if api != nil {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| real API server | sandboxes | clients x names | flips (rate x s, achieved/s) | API write -> ACK p50 / p90 / p99 / max ms | API write -> resolver p50 / p99 ms | resolver -> ACK p50 / p99 ms | bytes per flip per subscriber | bytes to others |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		fmt.Fprintf(w, "| ours, informer-backed resolver | %d | %d x %d | %d (%g x %g, %.1f) | %s / %s / %s / %s | %s / %s | %s / %s | %.0f | %d |\n",
			api.Sandboxes, api.Clients, api.Names, api.Flips, api.Rate, api.Seconds, api.AchievedPerSec,
			ms(api.AckP50Ms), ms(api.AckP90Ms), ms(api.AckP99Ms), ms(api.AckMaxMs),
			ms(api.ResolverP50Ms), ms(api.ResolverP99Ms), ms(api.XDSShareP50Ms), ms(api.XDSShareP99Ms),
			api.BytesPerFlip, api.OtherBytes)
		if api.Censored > 0 || api.WriteErrors > 0 {
			fmt.Fprintf(w, "\n- API server run: %d flips never acknowledged, %d failed writes\n", api.Censored, api.WriteErrors)
		}
	}
}

func holdings(c runConfig) string {
	switch {
	case c.Mode == modeWildcard:
		return fmt.Sprintf("%d x all", c.Clients)
	case c.Overlap > 1:
		return fmt.Sprintf("%d x %d (%d holders each)", c.Clients, c.Names*c.Overlap, c.Overlap)
	}
	return fmt.Sprintf("%d x %d", c.Clients, c.Names)
}

func target(w io.Writer, name, measured string, ok bool) {
	verdict := "PASS"
	if !ok {
		verdict = "**MISS**"
	}
	fmt.Fprintf(w, "| %s | %s | %s |\n", name, measured, verdict)
}

func ms(v float64) string {
	switch {
	case v < 0:
		return "n/d"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

func secs(v float64, cut bool) string {
	if cut {
		return fmt.Sprintf("> %.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func cold(f *coldFigures) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%s / %.2f", secs(f.Seconds, !f.Complete), mib(f.Bytes))
}

func ratio(a, b float64) string {
	switch {
	case a < 0:
		return "n/d"
	case b <= 0:
		return "-"
	}
	if a/b >= 100 {
		return fmt.Sprintf("%.0fx", a/b)
	}
	return fmt.Sprintf("%.1fx", a/b)
}

func absOrRatio(a, b float64) string {
	if b == 0 {
		return fmt.Sprintf("%.0f B vs 0", a)
	}
	return ratio(a, b)
}
