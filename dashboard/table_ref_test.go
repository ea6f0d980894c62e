package dashboard

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// TestTableMatchesBruteForce compares the table (its early-stopping walk
// over cached orders and its counts from per-namespace totals) with the
// obvious computation: filter everything, sort it, cut the page.
func TestTableMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	fr := newFakeResolver()
	act := newFakeActivity(time.Minute)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 600 {
		ns := fmt.Sprintf("ns-%d", rng.IntN(6))
		r := inState(resolver.State(1+rng.IntN(numStates-1)), ns, fmt.Sprintf("%c%c-%d", 'a'+rng.IntN(4), 'a'+rng.IntN(4), i), fmt.Sprintf("u%d", i))
		if i%9 == 0 {
			r.Name = fmt.Sprintf("pool-%d", i)
			fr.warm[r.UID] = r
			continue
		}
		fr.sandboxes[nsName{ns, r.Name}] = r
		if i%4 != 0 {
			act.last[key(ns, r.Name)] = now.Add(-time.Duration(rng.IntN(50)) * time.Second)
		}
	}
	c := newCatalog(fr)
	v := c.load()
	all := v.items
	last := lastActivity(fr, act)

	queries := 0
	for _, hide := range []string{"", "ns-2"} {
		var viewer Viewer
		if hide != "" {
			viewer = hiding(hide)
		}
		for range 400 {
			vals := url.Values{}
			pick := func(name string, options ...string) {
				if o := options[rng.IntN(len(options))]; o != "" {
					vals.Set(name, o)
				}
			}
			pick("q", "", "", "a", "ab", "-1", "s-3/b", "pool", "zz")
			pick("namespace", "", "", "ns-1", "ns-2", "ns-9")
			pick("state", "", "", "running", "suspended", "finished")
			pick("kind", "", "", "warm-pool-pod", "all")
			pick("sort", "", "name", "state", "lastActivity")
			pick("order", "", "desc")
			pick("size", "", "7", "50")
			pick("page", "", "2", "5")
			q, err := parseTableQuery(vals)
			if err != nil {
				t.Fatal(err)
			}
			got := v.table(q, newVisibility(t.Context(), viewer), newRowMaker(fr, act, now), last)

			var want []*item
			var counts [numStates]int
			for _, it := range all {
				if !q.matches(it) || (hide != "" && it.res.Namespace == hide) {
					continue
				}
				counts[it.res.State]++
				if q.state == resolver.StateUnknown || it.res.State == q.state {
					want = append(want, it)
				}
			}
			slices.SortStableFunc(want, func(a, b *item) int {
				switch q.sort {
				case sortName:
					return strings.Compare(a.res.Name, b.res.Name)
				case sortState:
					return cmp.Compare(a.res.State, b.res.State)
				case sortActivity:
					return last(a).Compare(last(b))
				}
				return 0
			})
			if q.desc {
				slices.Reverse(want)
			}
			total := len(want)
			from := min((q.page-1)*q.size, total)
			want = want[from:min(from+q.size, total)]
			if got.Total != total || !mapsEqual(got.Counts, stateMap(&counts)) {
				t.Fatalf("%s (hiding %q): total %d counts %v, want %d %v", vals.Encode(), hide, got.Total, got.Counts, total, stateMap(&counts))
			}
			if len(got.Rows) != len(want) {
				t.Fatalf("%s: %d rows, want %d", vals.Encode(), len(got.Rows), len(want))
			}
			for i, it := range want {
				if r := got.Rows[i]; r.Namespace != it.res.Namespace || r.Name != it.res.Name || r.UID != it.res.UID {
					t.Fatalf("%s: row %d is %s/%s, want %s/%s", vals.Encode(), i, r.Namespace, r.Name, it.res.Namespace, it.res.Name)
				}
			}
			queries++
		}
	}
	t.Logf("%d queries agree", queries)
}
