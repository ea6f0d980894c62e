package propagation

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/resolver/kube"
	"github.com/sandbox-router/sandbox-router/router"
)

var (
	measured = flag.Int("propagation-pods", 1000, "pods measured by BenchmarkPropagation")
	others   = flag.Int("propagation-others", 10000, "other sandboxes in the cache during BenchmarkPropagation")
)

const (
	measuredNS = "prop"
	othersNS   = "bulk"
	// ipBase keeps this package's pod addresses apart from other e2e
	// packages' sims.
	waitTimeout = 2 * time.Minute
)

var ipBase = netip.MustParseAddr("127.0.8.1")

// result holds one run's latencies, and the router binary's resident
// memory per sandbox in the cache.
type result struct {
	endToEnd, resolverShare, plainInformer []time.Duration
	rssPerSandbox, rssMarginal             float64
}

func TestPropagationSmoke(t *testing.T) {
	r := run(t, 20, 200)
	if len(r.endToEnd) != 20 || len(r.plainInformer) != 20 {
		t.Fatalf("measured %d end-to-end and %d plain-informer latencies, want 20 each", len(r.endToEnd), len(r.plainInformer))
	}
	t.Logf("end to end p50 %v, resolver share p50 %v, plain informer p50 %v",
		quantile(r.endToEnd, 0.5), quantile(r.resolverShare, 0.5), quantile(r.plainInformer, 0.5))
}

// BenchmarkPropagation reports p50 and p99 of the end-to-end propagation,
// of the resolver's own share (event decoded to routable) and of a plain
// Pod informer seeing the same writes. Run it with -benchtime=1x.
func BenchmarkPropagation(b *testing.B) {
	for b.Loop() {
		r := run(b, *measured, *others)
		for _, m := range []struct {
			name string
			d    []time.Duration
		}{{"e2e", r.endToEnd}, {"resolver", r.resolverShare}, {"plain-informer", r.plainInformer}} {
			b.ReportMetric(float64(quantile(m.d, 0.5))/1e6, m.name+"-p50-ms")
			b.ReportMetric(float64(quantile(m.d, 0.99))/1e6, m.name+"-p99-ms")
			b.ReportMetric(float64(slices.Max(m.d))/1e6, m.name+"-max-ms")
		}
		b.ReportMetric(float64(quantile(r.endToEnd, 0.5))/float64(quantile(r.plainInformer, 0.5)), "e2e/plain-p50")
		b.ReportMetric(r.rssPerSandbox, "router-rss-B/sandbox")
		b.ReportMetric(r.rssMarginal, "router-rss-marginal-B/sandbox")
	}
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func run(tb testing.TB, n, nOthers int) result {
	// The router binary runs with GOGC 400 unless told otherwise
	// (cmd/sandbox-router); the in-process resolver and router here get
	// the same.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	c := cluster.Start(tb)
	ctx := tb.Context()
	if err := c.ApplyCRDs(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := c.GrantRouter(ctx); err != nil {
		tb.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(c.AdminConfig())
	dyn := dynamic.NewForConfigOrDie(c.AdminConfig())
	for _, ns := range []string{measuredNS, othersNS} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			tb.Fatal(err)
		}
	}
	// The router binary, watching from an empty cluster: its resident
	// memory before and after the cache fills.
	routerProc := startRouterBinary(tb, c)
	rssEmpty := rss(tb, routerProc.Pid())
	start := time.Now()
	half := nOthers / 2
	createOthers(tb, cs, dyn, 0, half)
	waitCached(tb, routerProc, half)
	rssHalf := rss(tb, routerProc.Pid())
	createOthers(tb, cs, dyn, half, nOthers)
	tb.Logf("created %d other sandboxes with ready pods in %v", nOthers, time.Since(start).Round(time.Millisecond))

	// The resolver and the router, in this process, with the router's
	// non-admin identity; the resolver's share is observed per change.
	var mu sync.Mutex
	var share []time.Duration
	recording := false
	kr, err := kube.New(kube.Options{Config: c.RouterConfig(), ObserveLatency: func(d time.Duration) {
		mu.Lock()
		if recording {
			share = append(share, d)
		}
		mu.Unlock()
	}})
	if err != nil {
		tb.Fatal(err)
	}
	go kr.Run(ctx)
	rt, err := router.New(router.Options{Resolver: kr, AllowLoopbackPodIP: true, Metrics: router.NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		tb.Fatal(err)
	}
	defer rt.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: rt}
	go srv.Serve(ln)
	defer srv.Close()

	// The reference: a plain Pod informer, whole objects, same writes.
	plainSeen := plainInformer(ctx, tb, c.RouterConfig())
	// The sim writes each Sandbox's status after its pod's; waiting for
	// it before the next pod keeps one write in flight per measurement.
	statusSeen := sandboxReadyInformer(ctx, tb, c.AdminConfig())

	s, err := sim.New(sim.Options{Config: c.AdminConfig(), Namespaces: []string{measuredNS}, ManualReady: true, IPBase: ipBase})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	if err := s.Run(ctx); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		createSandbox(tb, dyn, measuredNS, "m-"+strconv.Itoa(i))
	}
	for i := range n {
		name := "m-" + strconv.Itoa(i)
		wctx, cancel := context.WithTimeout(ctx, waitTimeout)
		_, err := s.WaitPod(wctx, measuredNS, name, func(sim.PodInfo) bool { return true })
		cancel()
		if err != nil {
			tb.Fatalf("pod of %s: %v", name, err)
		}
		waitState(tb, kr, resolver.Key{Namespace: measuredNS, Name: name}, resolver.StateStarting)
	}
	if want := n + nOthers; len(kr.Snapshot()) < want {
		tb.Fatalf("resolver holds %d sandboxes, want %d", len(kr.Snapshot()), want)
	}
	waitCached(tb, routerProc, n+nOthers)
	var res result
	rssFull := rss(tb, routerProc.Pid())
	res.rssPerSandbox = float64(rssFull-rssEmpty) / float64(n+nOthers)
	// The marginal cost, between half and all of the cache, leaves out
	// the garbage the GC target allows (a constant 32 MiB once the cache
	// dominates the heap, see cmd/sandbox-router/gc.go).
	res.rssMarginal = float64(rssFull-rssHalf) / float64(n+nOthers-half)
	tb.Logf("router binary resident: %d KiB with an empty cache, %d KiB with %d sandboxes, %d KiB with %d: %.0f B per sandbox over empty, %.0f B per added sandbox",
		rssEmpty>>10, rssHalf>>10, half, rssFull>>10, n+nOthers, res.rssPerSandbox, res.rssMarginal)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	mu.Lock()
	recording = true
	mu.Unlock()
	for i := range n {
		name := "m-" + strconv.Itoa(i)
		key := resolver.Key{Namespace: measuredNS, Name: name}
		changed, release := kr.Changed(key)
		sentAt, err := s.MarkReady(ctx, measuredNS, name)
		if err != nil {
			release()
			tb.Fatal(err)
		}
		for kr.Lookup(key).State != resolver.StateRunning {
			select {
			case <-changed:
			case <-time.After(waitTimeout):
				tb.Fatalf("%s never became routable", name)
			}
			release()
			changed, release = kr.Changed(key)
		}
		release()
		if err := serve(client, ln.Addr().String(), name); err != nil {
			tb.Fatal(err)
		}
		res.endToEnd = append(res.endToEnd, time.Since(sentAt))
		seen := plainSeen.wait(tb, name)
		res.plainInformer = append(res.plainInformer, seen.Sub(sentAt))
		statusSeen.wait(tb, name)
	}
	mu.Lock()
	res.resolverShare = slices.Clone(share)
	mu.Unlock()
	return res
}

func serve(client *http.Client, addr, name string) error {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Header.Set("X-Sandbox-ID", name)
	req.Header.Set("X-Sandbox-Namespace", measuredNS)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: first request got %d %s", name, resp.StatusCode, body)
	}
	return nil
}

func waitState(tb testing.TB, kr *kube.Resolver, key resolver.Key, want resolver.State) {
	tb.Helper()
	for {
		changed, release := kr.Changed(key)
		got := kr.Lookup(key).State
		if got == want {
			release()
			return
		}
		select {
		case <-changed:
			release()
		case <-time.After(waitTimeout):
			release()
			tb.Fatalf("%v: state %v, want %v", key, got, want)
		}
	}
}

// startRouterBinary runs the real router binary against c with the
// non-admin identity.
func startRouterBinary(tb testing.TB, c *cluster.Cluster) *routerproc.Proc {
	dir := tb.TempDir()
	bin, err := routerproc.Build(tb.Context(), dir)
	if err != nil {
		tb.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "router.kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, c.RouterToken); err != nil {
		tb.Fatal(err)
	}
	p, err := routerproc.Start(tb.Context(), routerproc.Options{Bin: bin, Args: []string{"--kubeconfig", kubeconfig, "--access-log", "off"}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Stop() })
	if err := p.WaitReady(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return p
}

// waitCached waits until the router binary's resolver holds n sandboxes
// (its sandbox_router_resolver_sandboxes gauge).
func waitCached(tb testing.TB, p *routerproc.Proc, n int) {
	deadline := time.Now().Add(waitTimeout)
	for {
		resp, err := http.Get("http://" + p.AdminAddr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, line := range strings.Split(string(body), "\n") {
				if v, ok := strings.CutPrefix(line, "sandbox_router_resolver_sandboxes "); ok {
					if got, _ := strconv.ParseFloat(v, 64); int(got) >= n {
						return
					}
				}
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("router binary never cached %d sandboxes", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rss reads a process's resident set size in bytes.
func rss(tb testing.TB, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	tb.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// readyTimes records when a plain informer saw each pod of the measured
// namespace turn Ready.
type readyTimes struct {
	mu   sync.Mutex
	seen map[string]time.Time
	cond *sync.Cond
}

func newReadyTimes() *readyTimes {
	r := &readyTimes{seen: make(map[string]time.Time)}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// mark records the first time name was seen ready.
func (r *readyTimes) mark(name string) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.seen[name]; !dup {
		r.seen[name] = now
		r.cond.Broadcast()
	}
}

func (r *readyTimes) wait(tb testing.TB, sandbox string) time.Time {
	deadline := time.AfterFunc(waitTimeout, func() { r.mu.Lock(); r.cond.Broadcast(); r.mu.Unlock() })
	defer deadline.Stop()
	start := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if t, ok := r.seen[sandbox]; ok {
			return t
		}
		if time.Since(start) > waitTimeout {
			tb.Fatalf("the plain informer never saw %s ready", sandbox)
		}
		r.cond.Wait()
	}
}

func plainInformer(ctx context.Context, tb testing.TB, cfg *rest.Config) *readyTimes {
	r := newReadyTimes()
	pcfg := rest.CopyConfig(cfg)
	pcfg.ContentType = "application/vnd.kubernetes.protobuf"
	factory := informers.NewSharedInformerFactoryWithOptions(kubernetes.NewForConfigOrDie(pcfg), 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = kube.SandboxNameHashLabel }))
	inf := factory.Core().V1().Pods().Informer()
	record := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Namespace != measuredNS || !podReady(p) {
			return
		}
		for _, ref := range p.OwnerReferences {
			r.mark(ref.Name)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, o any) { record(o) }}); err != nil {
		tb.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return r
}

// sandboxReadyInformer records when each Sandbox of the measured
// namespace reports Ready=True in its status.
func sandboxReadyInformer(ctx context.Context, tb testing.TB, cfg *rest.Config) *readyTimes {
	r := newReadyTimes()
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dynamic.NewForConfigOrDie(cfg), 0, measuredNS, nil)
	inf := factory.ForResource(sandboxes).Informer()
	record := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Ready" && m["status"] == "True" {
				r.mark(u.GetName())
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, o any) { record(o) }}); err != nil {
		tb.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return r
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

var sandboxes = schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}

func createSandbox(tb testing.TB, dyn dynamic.Interface, ns, name string) *unstructured.Unstructured {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": sim.Group + "/v1beta1", "kind": "Sandbox",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"operatingMode": "Running"},
	}}
	got, err := dyn.Resource(sandboxes).Namespace(ns).Create(tb.Context(), obj, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create sandbox %s/%s: %v", ns, name, err)
	}
	return got
}

// createOthers fills the cache: sandboxes o-<from> to o-<to-1>, each with a ready pod
// carrying a realistic spec, written straight to the API server (no
// backends: nobody sends them traffic).
func createOthers(tb testing.TB, cs kubernetes.Interface, dyn dynamic.Interface, from, to int) {
	const workers = 16
	work := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range work {
				if err := createOther(tb, cs, dyn, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := from; i < to; i++ {
		select {
		case work <- i:
		case err := <-errs:
			close(work)
			wg.Wait()
			tb.Fatal(err)
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
}

func createOther(tb testing.TB, cs kubernetes.Interface, dyn dynamic.Interface, i int) error {
	ctx := tb.Context()
	name := "o-" + strconv.Itoa(i)
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": sim.Group + "/v1beta1", "kind": "Sandbox",
		"metadata": map[string]any{"name": name, "namespace": othersNS},
		"spec":     map[string]any{"operatingMode": "Running"},
	}}
	sbx, err := dyn.Resource(sandboxes).Namespace(othersNS).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	controller := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name + "-pod", Namespace: othersNS,
			Labels: map[string]string{kube.SandboxNameHashLabel: sim.NameHash(name)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: sim.Group + "/v1beta1", Kind: "Sandbox",
				Name: name, UID: sbx.GetUID(), Controller: &controller}},
		},
		Spec: corev1.PodSpec{NodeName: "bulk-node", Containers: []corev1.Container{{
			Name: "sandbox", Image: "registry.example.com/agents/python-sandbox:3.12",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8888}},
			Env:   []corev1.EnvVar{{Name: "SANDBOX", Value: name}, {Name: "WORKSPACE", Value: "/workspace"}},
		}}},
	}
	created, err := cs.CoreV1().Pods(othersNS).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	created.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), HostIP: "10.128.0.1",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
	}
	created.Status.PodIPs = []corev1.PodIP{{IP: created.Status.PodIP}}
	_, err = cs.CoreV1().Pods(othersNS).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}
