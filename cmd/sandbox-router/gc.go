package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
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
	maxGCPercent = 400
	minGCPercent = 50
	gcHeadroom   = 32 << 20
)

// gcPercentFor is the GOGC for a live heap of live bytes.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	return int(min(max(gcHeadroom*100/live, minGCPercent), maxGCPercent))
}

// gcTuner applies gcPercentFor after every collection, until ctx ends.
// Each cycle it leaves an object for the collector to find unreachable;
// the object's cleanup retunes and leaves the next. A timer would be
// late: thousands of WebSockets opening in a few seconds grow the live
// heap by tens of MiB while the target still allows 400%.
type gcTuner struct {
	ctx     context.Context
	sample  []metrics.Sample
	current atomic.Int64 // the GOGC set last; -1 before the first
}

// gcSentinel holds a pointer so that it is not a tiny allocation, whose
// cleanups may never run.
type gcSentinel struct{ _ *int }

func tuneGC(ctx context.Context) *gcTuner {
	t := &gcTuner{ctx: ctx, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.current.Store(-1)
	t.retune()
	return t
}

// retune runs on the runtime's cleanup goroutine, one call at a time.
func (t *gcTuner) retune() {
	if t.ctx.Err() != nil {
		return
	}
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		if p := gcPercentFor(t.sample[0].Value.Uint64()); int64(p) != t.current.Load() {
			debug.SetGCPercent(p)
			t.current.Store(int64(p))
		}
	}
	runtime.AddCleanup(&gcSentinel{}, func(t *gcTuner) { t.retune() }, t)
}
