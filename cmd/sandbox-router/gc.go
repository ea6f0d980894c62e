package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The garbage collector's target is live heap × (1 + GOGC/100). The data
// plane's live heap is a few MiB (bodies stream through pooled buffers),
// and there GOGC 400 costs little memory and measured about 4% more
// requests/s. A large live heap is held state instead: the resolver's
// cache (about 800 B per sandbox) and open tunnels (about 8 KiB each),
// which allocate little once built. A fixed 400, or even 100, would let
// the process hold that much again in garbage: 9,000 idle WebSockets
// measured 17.7 KiB resident each at GOGC 100 and 10.5 KiB at 50, for
// 7.8 KiB live. So the target allows gcHeadroom of garbage, between GOGC
// 50 and 400: never less than 32 MiB between cycles, so they come no
// more often than at 32 MiB live.
const (
	maxGCPercent   = 400
	minGCPercent   = 50
	gcHeadroom     = 32 << 20
	gcTuneInterval = 15 * time.Second
)

// gcPercentFor is the GOGC for a live heap of live bytes.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	return int(min(max(gcHeadroom*100/live, minGCPercent), maxGCPercent))
}

// tuneGC applies gcPercentFor now and every gcTuneInterval until ctx ends.
func tuneGC(ctx context.Context) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := -1
	tick := time.NewTicker(gcTuneInterval)
	defer tick.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			if p := gcPercentFor(sample[0].Value.Uint64()); p != current {
				debug.SetGCPercent(p)
				current = p
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
