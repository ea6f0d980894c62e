package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, tt := range []struct {
		live uint64
		want int
	}{
		{0, 400},
		{4 << 20, 400},  // the data plane alone
		{16 << 20, 200}, // 32 MiB of garbage allowed
		{32 << 20, 100},
		{64 << 20, 50},
		{800 << 20, 50}, // a million sandboxes, or 100,000 tunnels: never below 50
	} {
		if got := gcPercentFor(tt.live); got != tt.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", tt.live>>20, got, tt.want)
		}
	}
}

// TestGCTunerFollowsTheHeap: the target follows the live heap from one
// collection to the next, without a timer.
func TestGCTunerFollowsTheHeap(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		runtime.GC() // the last cleanup sees ctx done and stops
		debug.SetGCPercent(100)
	}()
	tuner := tuneGC(ctx)
	waitGOGC := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for tuner.current.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("GOGC %d, want %d", tuner.current.Load(), want)
			}
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
	}
	held := make([][]byte, 0, 96)
	for range 96 {
		held = append(held, make([]byte, 1<<20))
	}
	waitGOGC(minGCPercent) // 96 MiB live: 50
	runtime.KeepAlive(held)
	held = nil
	waitGOGC(maxGCPercent) // back to a small heap: 400
}
