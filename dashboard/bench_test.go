package dashboard

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// bigResolver holds n sandboxes in 100 namespaces, in every state, with
// lifecycles and activity on some, and 1% warm-pool pods.
func bigResolver(n int) (*fakeResolver, *fakeActivity) {
	fr := newFakeResolver()
	act := newFakeActivity(15 * time.Minute)
	now := time.Now()
	states := []resolver.State{resolver.StateRunning, resolver.StateRunning, resolver.StateSuspended, resolver.StateStarting, resolver.StateSuspending, resolver.StateFinished}
	for i := range n {
		ns, name := fmt.Sprintf("team-%02d", i%100), fmt.Sprintf("sb-%06d", i)
		r := resolver.Result{State: states[i%len(states)], Namespace: ns, Name: name, UID: fmt.Sprintf("uid-%d", i)}
		if r.State == resolver.StateRunning {
			r.PodIP = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		}
		if i%100 == 99 {
			r.Name = fmt.Sprintf("pool-%06d", i)
			fr.warm[r.UID] = r
			continue
		}
		fr.sandboxes[nsName{ns, name}] = r
		if i%3 == 0 {
			fr.lifecycles[nsName{ns, name}] = resolver.Lifecycle{LastActivity: now.Add(-time.Duration(i) * time.Second)}
		}
		if i%7 == 0 {
			act.last[key(ns, name)] = now.Add(-time.Duration(i%600) * time.Second)
		}
	}
	return fr, act
}

// benchHandler is a handler with its catalog loaded and no Run: the
// benchmark's goroutine is the only writer.
func benchHandler(b *testing.B, fr *fakeResolver, opts Options) *Handler {
	opts.Sandboxes = fr
	h, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	h.cat.load()
	return h
}

// BenchmarkTableFirstPage is the server's time for the table's first page
// (50 rows, JSON encoded) at 10,000 and 100,000 sandboxes: by sort and
// filter, with a viewer filtering namespaces, with the catalog changing
// between requests (orders rebuilt every time: the worst case under
// churn), and, as the reference, what re-sorting a snapshot per request
// would cost before any filtering or encoding.
func BenchmarkTableFirstPage(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		fr, act := bigResolver(n)
		h := benchHandler(b, fr, Options{Activity: act})
		hv := benchHandler(b, fr, Options{Activity: act, Viewer: func(*http.Request) (Viewer, error) { return hiding("team-07"), nil }})
		for _, tc := range []struct {
			name  string
			h     *Handler
			query string
		}{
			{"default", h, ""},
			{"search", h, "?q=sb-0001"},
			{"namespace+state", h, "?namespace=team-42&state=running"},
			{"sort=name", h, "?sort=name"},
			{"sort=state,desc", h, "?sort=state&order=desc"},
			{"sort=lastActivity", h, "?sort=lastActivity&order=desc"},
			{"last-page", h, fmt.Sprintf("?page=%d", n/50-1)},
			{"viewer", hv, ""},
		} {
			b.Run(fmt.Sprintf("rows=%d/%s", n, tc.name), func(b *testing.B) {
				req := httptest.NewRequest(http.MethodGet, "/api/sandboxes"+tc.query, nil)
				// Steady state: the generation's order is built (the
				// "changing" case below measures building it).
				tc.h.ServeHTTP(httptest.NewRecorder(), req)
				b.ReportAllocs()
				for b.Loop() {
					rec := httptest.NewRecorder()
					tc.h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatal(rec.Code, rec.Body)
					}
				}
			})
		}
		b.Run(fmt.Sprintf("rows=%d/sort=name,changing", n), func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/api/sandboxes?sort=name", nil)
			k := key("team-05", "sb-000005")
			st := []resolver.State{resolver.StateRunning, resolver.StateSuspended}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				fr.sandboxes[nsName{k.Namespace, k.Name}] = resolver.Result{State: st[i%2], Namespace: k.Namespace, Name: k.Name, UID: "uid-5"}
				h.cat.apply([]resolver.Key{k})
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
			}
		})
		b.Run(fmt.Sprintf("rows=%d/reference:snapshot+sort", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				snap := fr.Snapshot()
				slices.SortFunc(snap, func(a, b resolver.Result) int {
					if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
						return c
					}
					return strings.Compare(a.Name, b.Name)
				})
				_ = snap[:50]
			}
		})
	}
}
