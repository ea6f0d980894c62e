package activator

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/sandbox-router/sandbox-router/bench/tffi/tffi"
	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

var cycles = flag.Int("resume-cycles", 100, "suspend/resume cycles measured by BenchmarkResumeCycle")

// cycleTimes are one run's latencies, one per cycle, each paired with the
// reference measured in the same cycle.
type cycleTimes struct {
	// resumeLag: the first held request sent -> the router's resume
	// patch received by the API server (audit log);
	// patchFloor: the admin's suspend patch sent -> received, the same
	// path for a client that sends at once.
	resumeLag, patchFloor []time.Duration
	// overhead: the new pod's Ready status write sent (sim) -> the first
	// response byte at the client; informerFloor: the same write sent ->
	// a plain client-go Pod informer sees the pod Ready, the propagation
	// every watcher pays; share: overhead - informerFloor per cycle, the
	// router's own part (resolver, activator release, probe, proxy).
	overhead, informerFloor, share []time.Duration
	// hold: the first held request sent -> its first response byte.
	hold []time.Duration
}

// TestResumeCycleSmoke runs a few cycles of BenchmarkResumeCycle, so that
// the tests exercise its code; no latency is asserted.
func TestResumeCycleSmoke(t *testing.T) {
	const n = 5
	r := resumeCycles(t, n)
	for name, d := range r.series() {
		if len(d) != n {
			t.Errorf("%s: %d values, want %d", name, len(d), n)
		}
	}
	t.Log(r.table())
}

// BenchmarkResumeCycle measures the resume path on the real API server
// with the router binary: per cycle an admin suspends the sandbox, one
// request is sent once it is suspended, and the cycle records how soon
// the router's resume patch reached the API server (target p99 <= 10ms)
// and how much the first response byte trails the new pod's Ready write
// (target p99 <= 50ms on loopback), each against a reference of the same
// cycle. Run it with -benchtime 1x; -resume-cycles sets the cycles.
func BenchmarkResumeCycle(b *testing.B) {
	for b.Loop() {
		r := resumeCycles(b, *cycles)
		for _, s := range r.ordered() {
			b.ReportMetric(ms(tffi.Quantile(s.d, 0.50)), s.name+"-p50-ms")
			b.ReportMetric(ms(tffi.Quantile(s.d, 0.90)), s.name+"-p90-ms")
			b.ReportMetric(ms(tffi.Quantile(s.d, 0.99)), s.name+"-p99-ms")
			b.ReportMetric(ms(slices.Max(s.d)), s.name+"-max-ms")
		}
		lag, over := r.ratios()
		b.ReportMetric(lag, "resume-lag/patch-floor-p50")
		b.ReportMetric(over, "overhead/informer-floor-p50")
		fmt.Println(r.table()) // b.Log shows only with -v
	}
}

// ratios are the p50 ratios of the two measures to their references.
func (r *cycleTimes) ratios() (lag, overhead float64) {
	return float64(tffi.Quantile(r.resumeLag, 0.5)) / float64(tffi.Quantile(r.patchFloor, 0.5)),
		float64(tffi.Quantile(r.overhead, 0.5)) / float64(tffi.Quantile(r.informerFloor, 0.5))
}

type series struct {
	name string
	d    []time.Duration
}

func (r *cycleTimes) ordered() []series {
	return []series{
		{"resume-lag", r.resumeLag}, {"patch-floor", r.patchFloor},
		{"overhead", r.overhead}, {"informer-floor", r.informerFloor}, {"share", r.share},
		{"hold", r.hold},
	}
}

func (r *cycleTimes) series() map[string][]time.Duration {
	m := map[string][]time.Duration{}
	for _, s := range r.ordered() {
		m[s.name] = s.d
	}
	return m
}

// table is the quantiles of every series, with the ratios to the
// references.
func (r *cycleTimes) table() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d resume cycles (sim start delay %v):\n", len(r.hold), startDelay)
	fmt.Fprintf(&sb, "  %-16s %9s %9s %9s %9s\n", "ms", "p50", "p90", "p99", "max")
	for _, s := range r.ordered() {
		fmt.Fprintf(&sb, "  %-16s %9.3f %9.3f %9.3f %9.3f\n", s.name,
			ms(tffi.Quantile(s.d, 0.5)), ms(tffi.Quantile(s.d, 0.9)), ms(tffi.Quantile(s.d, 0.99)), ms(slices.Max(s.d)))
	}
	sb.WriteString("  resume-lag: request sent -> resume patch received (target p99 <= 10ms); patch-floor: a client's patch sent -> received\n")
	sb.WriteString("  overhead: pod Ready write sent -> first response byte (target p99 <= 50ms); informer-floor: the same write -> a plain Pod informer sees it; share: overhead - informer-floor\n")
	sb.WriteString("  hold: request sent -> first response byte\n")
	lag, over := r.ratios()
	fmt.Fprintf(&sb, "  p50 ratios: resume-lag/patch-floor %.2f, overhead/informer-floor %.2f", lag, over)
	return sb.String()
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func resumeCycles(tb testing.TB, n int) *cycleTimes {
	const ns, name = "cycle", "cycler"
	e := newEnv(tb, simSpec{namespaces: []string{ns}})
	e.createSandbox(tb, ns, name, false, nil)
	// No idle timeout: the router writes nothing but resumes, so its
	// i-th patch of the sandbox is the i-th cycle's resume.
	p := e.startRouter(tb, "--leader-election=false")
	plain := newPodReadyTimes(tb, e.c.RouterConfig())
	pod := e.waitRunning(tb, ns, name)
	// One keep-alive connection to the router, opened before the cycles.
	c := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	send := func(first *time.Time) reply {
		req, _ := http.NewRequestWithContext(tb.Context(), http.MethodGet, "http://"+p.HTTPAddr+"/", nil)
		setKey(req.Header, ns, name)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotFirstResponseByte: func() { *first = time.Now() },
		}))
		resp, err := c.Do(req)
		if err != nil {
			return reply{Err: err}
		}
		defer resp.Body.Close()
		r := reply{Status: resp.StatusCode}
		if err := jsonBody(resp, &r); err != nil {
			r.Err = err
		}
		return r
	}
	var warm time.Time
	if r := send(&warm); !r.servedBy(name) {
		tb.Fatalf("before the cycles: %v", r)
	}

	r := &cycleTimes{}
	s := e.sims[ns]
	for i := range n {
		from := e.watch.len(ns, name)
		suspendSent := e.setMode(tb, ns, name, true)
		ctx, cancel := context.WithTimeout(tb.Context(), waitTimeout)
		// Suspended: the sim stopped the pod and wrote the Suspended
		// condition, after the spec change every watcher saw first.
		if _, err := e.watch.wait(ctx, ns, name, from, func(o sandboxObs) bool { return o.suspended && o.suspendedCond }); err != nil {
			cancel()
			tb.Fatalf("cycle %d: not suspended: %v", i, err)
		}
		var first time.Time
		sent := time.Now()
		if got := send(&first); !got.servedBy(name) {
			cancel()
			tb.Fatalf("cycle %d: %v", i, got)
		}
		next, err := s.WaitPod(ctx, ns, name, func(pi sim.PodInfo) bool { return pi.Ready && pi.UID != pod.UID })
		cancel()
		if err != nil {
			tb.Fatalf("cycle %d: %v", i, err)
		}
		resume := e.waitRouterPatches(tb, ns, name, i+1)[i]
		suspend := e.waitAdminPatches(tb, ns, name, i+1)[i]
		seen := plain.wait(tb, next.UID)
		r.resumeLag = append(r.resumeLag, resume.RequestReceived.Sub(sent))
		r.patchFloor = append(r.patchFloor, suspend.RequestReceived.Sub(suspendSent))
		r.overhead = append(r.overhead, first.Sub(next.ReadySentAt))
		r.informerFloor = append(r.informerFloor, seen.Sub(next.ReadySentAt))
		r.share = append(r.share, first.Sub(seen))
		r.hold = append(r.hold, first.Sub(sent))
		pod = next
	}
	if got := waitMetricSum(tb, p, mResumes, func(v float64) bool { return v >= float64(n) }); got != float64(n) {
		tb.Errorf("the router made %v resume calls in %d cycles", got, n)
	}
	return r
}

// waitAdminPatches waits until the audit log holds at least n patches of
// the sandbox by the admin (the test's own; the sim writes only status
// and pods) and returns them all.
func (e *env) waitAdminPatches(tb testing.TB, ns, name string, n int) []cluster.AuditEvent {
	tb.Helper()
	filter := func(evs []cluster.AuditEvent) []cluster.AuditEvent {
		var out []cluster.AuditEvent
		for _, ev := range evs {
			if ev.Verb == "patch" && ev.User == "admin" && ev.Resource == "sandboxes" && ev.Subresource == "" && ev.Namespace == ns && ev.Name == name {
				out = append(out, ev)
			}
		}
		return out
	}
	ctx, cancel := context.WithTimeout(tb.Context(), waitTimeout)
	defer cancel()
	evs, err := e.c.WaitAuditEvents(ctx, func(evs []cluster.AuditEvent) bool { return len(filter(evs)) >= n })
	if err != nil {
		tb.Fatalf("audit: admin patches of %s/%s: %v", ns, name, err)
	}
	return filter(evs)
}

// podReadyTimes records when a plain client-go Pod informer (whole
// objects, protobuf, as the router's user) first saw each pod Ready.
type podReadyTimes struct {
	mu      sync.Mutex
	seen    map[types.UID]time.Time
	changed chan struct{}
}

func newPodReadyTimes(tb testing.TB, cfg *rest.Config) *podReadyTimes {
	r := &podReadyTimes{seen: map[types.UID]time.Time{}, changed: make(chan struct{})}
	pcfg := rest.CopyConfig(cfg)
	pcfg.ContentType = "application/vnd.kubernetes.protobuf"
	factory := informers.NewSharedInformerFactoryWithOptions(kubernetes.NewForConfigOrDie(pcfg), 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sim.LabelNameHash }))
	inf := factory.Core().V1().Pods().Informer()
	record := func(obj any) {
		now := time.Now()
		pod, ok := obj.(*corev1.Pod)
		if !ok || !podReady(pod) {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, dup := r.seen[pod.UID]; !dup {
			r.seen[pod.UID] = now
			close(r.changed)
			r.changed = make(chan struct{})
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, o any) { record(o) }}); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	tb.Cleanup(func() { cancel(); factory.Shutdown() })
	if !cache.WaitForCacheSync(tb.Context().Done(), inf.HasSynced) {
		tb.Fatal("pod informer did not sync")
	}
	return r
}

func (r *podReadyTimes) wait(tb testing.TB, uid types.UID) time.Time {
	tb.Helper()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		at, ok := r.seen[uid]
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return at
		}
		select {
		case <-ch:
		case <-timeout.C:
			tb.Fatalf("the plain informer never saw pod %s Ready", uid)
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
