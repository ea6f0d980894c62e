package activator

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// BenchmarkHeldMemory holds 5,000 requests for one suspended sandbox and
// reports what each costs the activator: heap per held request (its
// waiter, its timer, its place in the queues) and the goroutine it parks,
// which in the router is the request's own handler. The sandbox then
// wakes and every request is released.
func BenchmarkHeldMemory(b *testing.B) {
	const n = 5000
	for b.Loop() {
		sb := newFakeSandboxes()
		k := nameKey("ns", "a")
		sb.set(k, resolver.Result{State: resolver.StateSuspended, UID: "u1"}, resolver.Lifecycle{})
		_, port := listen(b)
		wake := make(chan struct{})
		w := &fakeWaker{onResume: func(resolver.Key) error {
			go func() {
				<-wake
				sb.setState(k, resolver.StateRunning, loopback)
			}()
			return nil
		}}
		a := newTestActivator(b, sb, w, func(o *Options) { o.MaxHeldPerSandbox, o.MaxHeldTotal = n, n })
		runtime.GC()
		var before, held runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				_, release, err := a.Activate(context.Background(), resolver.Key{Namespace: "ns", Name: "a", UID: "u1"}, port, resolver.Result{})
				if err != nil {
					b.Error(err)
					return
				}
				release()
			})
		}
		eventually(b, "every request held", func() bool { return a.heldNow() == n })
		runtime.GC()
		runtime.ReadMemStats(&held)
		b.ReportMetric(float64(int64(held.HeapInuse)-int64(before.HeapInuse))/n, "heap-B/held")
		b.ReportMetric(float64(int64(held.StackInuse)-int64(before.StackInuse))/n, "stack-B/held")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/held")
		close(wake)
		wg.Wait()
		eventually(b, "nothing held", func() bool { return a.heldNow() == 0 && a.episodeCount() == 0 })
	}
}
