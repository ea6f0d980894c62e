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
// requests/s. The resolver's cache is different: it is live heap that
// grows with the cluster (about 800 B per sandbox), and a fixed 400 would
// let the process hold four times the cache in garbage. So the target
// allows at most gcHeadroom of garbage, between GOGC 100 and 400.
const (
	maxGCPercent   = 400
	minGCPercent   = 100
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
