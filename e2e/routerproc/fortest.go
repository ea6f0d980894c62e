package routerproc

import "testing"

// ForTest runs the router for a test or benchmark and waits until it is
// ready (its caches synced): it fails tb when the router does not start,
// and when tb ends it stops the router, counts an unclean exit as an
// error, and prints the router's log if tb failed.
func ForTest(tb testing.TB, opts Options) *Proc {
	tb.Helper()
	p, err := Start(tb.Context(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Errorf("router exit: %v", err)
		}
		if tb.Failed() {
			tb.Logf("router log:\n%s", p.Log())
		}
	})
	if err := p.WaitReady(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return p
}
