package main

import "testing"

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
