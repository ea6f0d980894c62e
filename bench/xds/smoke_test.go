package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestSmoke runs every control plane and client mode of the benchmark at
// a tiny size, in this process, and checks what the figures stand on:
// every client synced, every flip reached every holder, nothing went to
// clients that do not hold the sandbox (except with wildcard clients,
// which hold everything). It asserts no time.
func TestSmoke(t *testing.T) {
	for _, tc := range []struct {
		impl, mode string
		overlap    int
	}{
		{implOurs, modeVHDS, 1},
		{implOurs, modeVHDS, 2},
		{implLinear, modeWildcard, 1},
		{implLinear, modeNamed, 1},
		{implSnapshot, modeNamed, 1},
	} {
		c := runConfig{
			Label: tc.impl + "/" + tc.mode, Impl: tc.impl, Mode: tc.mode,
			Sandboxes: 600, Clients: 3, Names: 100, Overlap: tc.overlap,
			Rate: 200, Seconds: 0.25, Cold: 150,
			InitBudget: time.Minute, Drain: time.Minute, Seed: 7,
		}
		t.Run(fmt.Sprintf("%s/overlap%d", c.Label, c.Overlap), func(t *testing.T) {
			if err := c.check(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			p, errc, err := listenPlane(ctx, c.Impl, c.Sandboxes, c.Seed)
			if err != nil {
				t.Fatal(err)
			}
			res, err := measure(ctx, p, c, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			if res.Initial.Synced != c.Clients || len(res.Cuts) > 0 {
				t.Fatalf("initial sync: %d of %d clients; cuts %q", res.Initial.Synced, c.Clients, res.Cuts)
			}
			if res.ColdEmpty == nil || !res.ColdEmpty.Complete {
				t.Fatalf("cold start on the empty plane: %+v", res.ColdEmpty)
			}
			fl := res.Flips
			if fl.Count != 50 || fl.Censored != 0 {
				t.Fatalf("%d flips, %d (flip, holder) pairs not acknowledged; want 50 and 0", fl.Count, fl.Censored)
			}
			if fl.Subscribed == 0 || fl.Subscribed == fl.Count {
				t.Fatalf("%d of %d flips on held sandboxes: want some of each (300 of 600 are held)", fl.Subscribed, fl.Count)
			}
			if fl.SubscriberFlips != fl.Subscribed*c.Overlap {
				t.Fatalf("%d (flip, holder) pairs for %d flips with %d holders each", fl.SubscriberFlips, fl.Subscribed, c.Overlap)
			}
			if fl.SubscribedBytes == 0 {
				t.Fatal("no bytes counted for the holders")
			}
			if wild := c.Mode == modeWildcard; wild != (fl.OtherBytes > 0) {
				t.Fatalf("%d bytes to clients not holding the sandbox, in %s mode", fl.OtherBytes, c.Mode)
			}
			if res.HWMKiB == 0 || res.RSSBeforeKiB == 0 {
				t.Fatalf("no memory figures: %+v", res)
			}
			cancel()
			if err := <-errc; err != nil {
				t.Fatalf("plane: %v", err)
			}
		})
	}
}
