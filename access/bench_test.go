package access

import (
	"context"
	"testing"
)

// BenchmarkCheck is the per-request cost of the access check when both
// answers are cached (the steady state: a known token reaching a sandbox
// it reached before).
func BenchmarkCheck(b *testing.B) {
	for _, mode := range []Mode{ModeTokenReview, ModeKubernetes} {
		b.Run(string(mode), func(b *testing.B) {
			c, _, _ := newTestChecker(b, mode, newAuthority())
			r := request("Bearer alice-token")
			ctx := context.Background()
			if err := check(c, ctx, r, sbA, 8888); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := check(c, ctx, r, sbA, 8888); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// TestCachedCheckAllocatesNothing holds BenchmarkCheck's zero in make test.
func TestCachedCheckAllocatesNothing(t *testing.T) {
	c, _, _ := newTestChecker(t, ModeKubernetes, newAuthority())
	r := request("Bearer alice-token")
	ctx := context.Background()
	if err := check(c, ctx, r, sbA, 8888); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = c.Check(ctx, r, sbA, 8888, "") }); n != 0 {
		t.Fatalf("a cached check allocates %v times, want 0", n)
	}
}
