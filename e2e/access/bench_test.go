package access

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
)

var (
	modeRounds   = flag.Int("access-rounds", 3, "interleaved rounds of BenchmarkAccessModes")
	modeDuration = flag.Duration("access-duration", 5*time.Second, "load per mode and round in BenchmarkAccessModes")
)

// TestAccessModesSmoke runs the benchmark's code briefly, without
// figures: make test keeps it working.
func TestAccessModesSmoke(t *testing.T) {
	res := accessModes(t, 1, 300*time.Millisecond)
	for _, m := range res.modes {
		if res.served[m] == 0 {
			t.Errorf("%s: no request served", m)
		}
	}
}

// BenchmarkAccessModes: each access mode against allow-all in the same
// run, on the real API server, with warm caches (the steady state: known
// tokens reaching sandboxes they reached before): the router binary per
// mode, 50 concurrent clients (one token each) on one sandbox, interleaved
// rounds, the median req/s of each mode and its ratio to allow-all's.
// Target: every mode >= 0.9x allow-all.
func BenchmarkAccessModes(b *testing.B) {
	for range b.N {
		res := accessModes(b, *modeRounds, *modeDuration)
		base := median(res.rps[modeNames[0]])
		for _, m := range res.modes {
			med := median(res.rps[m])
			b.ReportMetric(med, m+"-req/s")
			if m != modeNames[0] {
				b.ReportMetric(med/base, m+"/allow-all")
			}
		}
		b.Logf("\n%s", res.table())
	}
}

var modeNames = []string{"allow-all", "tokenreview", "kubernetes"}

type modeResults struct {
	modes  []string
	rps    map[string][]float64
	served map[string]int64
}

func (r *modeResults) table() string {
	var sb strings.Builder
	base := median(r.rps[modeNames[0]])
	fmt.Fprintf(&sb, "| mode | req/s (median) | / allow-all | req/s per round |\n| --- | ---: | ---: | --- |\n")
	for _, m := range r.modes {
		var rounds []string
		for _, v := range r.rps[m] {
			rounds = append(rounds, fmt.Sprintf("%.0f", v))
		}
		fmt.Fprintf(&sb, "| %s | %.0f | %.2f | %s |\n", m, median(r.rps[m]), median(r.rps[m])/base, strings.Join(rounds, ", "))
	}
	return sb.String()
}

func accessModes(tb testing.TB, rounds int, d time.Duration) *modeResults {
	e := newEnv(tb)
	// One identity per client, each allowed to reach team-a/sb1.
	const clients = 50
	tokens := make([]string, clients)
	var subjects []rbacv1.Subject
	for i := range clients {
		name := fmt.Sprintf("load-%02d", i)
		tokens[i] = e.serviceAccount(tb, agents, name)
		subjects = append(subjects, sa(agents, name))
	}
	e.grant(tb, teamA, "load", subjects, "sb1")
	procs := map[string]*routerproc.Proc{}
	for _, m := range modeNames {
		// TTLs longer than the run: the figures are the cached path's.
		procs[m] = e.startRouter(tb, "--authz-mode", m, "--authz-tokenreview-ttl", "1h", "--authz-decision-ttl", "1h")
	}
	res := &modeResults{modes: modeNames, rps: map[string][]float64{}, served: map[string]int64{}}
	for _, m := range modeNames {
		load(tb, procs[m], tokens, 0) // warm: one request per token
	}
	for r := range rounds {
		for i := range modeNames {
			m := modeNames[(i+r)%len(modeNames)]
			n := load(tb, procs[m], tokens, d)
			res.rps[m] = append(res.rps[m], float64(n)/d.Seconds())
			res.served[m] += n
		}
	}
	return res
}

// load sends GET requests for team-a/sb1 through p from one client per
// token for d (d = 0: one request each) and returns how many were served.
// Any other answer fails the run.
func load(tb testing.TB, p *routerproc.Proc, tokens []string, d time.Duration) int64 {
	tb.Helper()
	var served atomic.Int64
	var mu sync.Mutex
	var failed []string
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for _, tok := range tokens {
		wg.Go(func() {
			for {
				r := get(context.Background(), p, teamA, "sb1", tok)
				if !r.served(teamA, "sb1") {
					mu.Lock()
					failed = append(failed, r.String())
					mu.Unlock()
					return
				}
				served.Add(1)
				if !time.Now().Before(deadline) {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		tb.Fatalf("%d clients failed; first: %s", len(failed), failed[0])
	}
	return served.Load()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return s[len(s)/2]
}
