package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/resolver/kube"
	"github.com/sandbox-router/sandbox-router/xds"
)

var (
	apiSandboxes = flag.Int("xds-api-sandboxes", 10_000, "sandboxes BenchmarkAPIServer creates")
	apiClients   = flag.Int("xds-api-clients", 5, "delta-xDS clients of BenchmarkAPIServer, each holding sandboxes/clients names")
	apiRate      = flag.Float64("xds-api-rate", 50, "flips per second BenchmarkAPIServer sends through the API server")
	apiSeconds   = flag.Float64("xds-api-seconds", 20, "length of BenchmarkAPIServer's flip phase")
	apiJSON      = flag.String("xds-api-json", "", "write BenchmarkAPIServer's figures here as JSON")
)

var sandboxGVR = schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}

const (
	// apiWorkers write to the API server at once, while creating and
	// while flipping.
	apiWorkers = 16
	apiTimeout = 2 * time.Minute
)

// BenchmarkAPIServer is the flip measurement on the real etcd and
// kube-apiserver: Sandbox objects and their Pods written through the API,
// the informer-backed resolver (resolver/kube) watching them, package
// xds's server on it and raw delta-xDS clients holding every sandbox's
// virtual host. Latency runs from the API write that changes the route
// (a suspend's operatingMode patch, a resume's Pod Ready status) to the
// holder's ACK. Run it with -benchtime 1x; bench/xds.sh does.
func BenchmarkAPIServer(b *testing.B) {
	for b.Loop() {
		r := runAPIServer(b, *apiSandboxes, *apiClients, *apiRate, *apiSeconds)
		b.ReportMetric(r.AckP50Ms, "ack-p50-ms")
		b.ReportMetric(r.AckP99Ms, "ack-p99-ms")
		b.ReportMetric(r.ResolverP50Ms, "resolver-p50-ms")
		b.ReportMetric(r.XDSShareP99Ms, "xds-share-p99-ms")
		b.ReportMetric(r.BytesPerFlip, "B/flip")
		if *apiJSON != "" {
			data, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(*apiJSON, append(data, '\n'), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// apiFleet is what the benchmark wrote: each sandbox's UID, whether it
// runs, and its current pod.
type apiFleet struct {
	cs  kubernetes.Interface
	dyn dynamic.Interface

	uids    []types.UID
	mu      sync.Mutex // running, pods and the resume counter
	running []bool
	pods    []string // current pod name, "" when suspended
	resumes uint32
}

func runAPIServer(tb testing.TB, n, nClients int, rate, seconds float64) apiResult {
	rc := runConfig{Sandboxes: n, Clients: nClients, Names: n / nClients, Overlap: 1, Rate: rate, Seconds: seconds}
	if err := rc.check(); err != nil {
		tb.Fatal(err)
	}
	c := cluster.Start(tb)
	ctx := tb.Context()
	if err := c.ApplyCRDs(ctx); err != nil {
		tb.Fatal(err)
	}
	af := &apiFleet{
		cs: kubernetes.NewForConfigOrDie(c.AdminConfig()), dyn: dynamic.NewForConfigOrDie(c.AdminConfig()),
		uids: make([]types.UID, n), running: make([]bool, n), pods: make([]string, n),
	}
	for ns := range min(n, namespaces) {
		if _, err := af.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespaceOf(ns)}}, metav1.CreateOptions{}); err != nil {
			tb.Fatal(err)
		}
	}
	res := apiResult{Sandboxes: n, Clients: nClients, Names: rc.Names, Rate: rate, Seconds: seconds}

	// The sandboxes: the even ones running with a ready pod, the odd ones
	// suspended, as in the synthetic runs.
	start := time.Now()
	if err := parallel(ctx, n, func(i int) error { return af.create(ctx, i) }); err != nil {
		tb.Fatal(err)
	}
	res.CreateSeconds = time.Since(start).Seconds()
	tb.Logf("created %d sandboxes (%d with a ready pod) in %.1f s", n, (n+1)/2, res.CreateSeconds)

	// The informer-backed resolver, and a reader of its feed that notes
	// when each change became visible: the reference the xDS push adds to.
	kr, err := kube.New(kube.Options{Config: c.AdminConfig()})
	if err != nil {
		tb.Fatal(err)
	}
	go kr.Run(ctx)
	select {
	case <-kr.SyncedC():
	case <-time.After(apiTimeout):
		tb.Fatal("the resolver did not sync")
	}
	waitResolved(tb, kr, af)
	seen := &visibility{at: map[int][]delivery{}}
	fd := kr.Subscribe()
	defer fd.Close()
	go seen.follow(ctx, fd, kr)

	s, err := xds.New(xds.Options{Resolver: kr, BaseDomains: []string{baseDomain}, DefaultPort: sandboxPort,
		RouterEndpoints: []netip.AddrPort{routerEndpoint}})
	if err != nil {
		tb.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx, lis) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	}()

	recording := &atomic.Bool{}
	clients := make([]*client, nClients)
	defer func() {
		for _, cl := range clients {
			if cl != nil {
				cl.close()
			}
		}
	}()
	syncStart := mono()
	for i := range clients {
		names := rc.namesOf(i)
		cl, err := dial(ctx, clientOptions{addr: lis.Addr().String(), nodeID: "envoy-" + strconv.Itoa(i), mode: modeVHDS,
			names: names, want: len(names), recording: recording, owns: func(s int) bool { return rc.holds(i, s) }})
		if err != nil {
			tb.Fatal(err)
		}
		clients[i] = cl
	}
	for _, cl := range clients {
		if err := waitSynced(ctx, cl, time.Now().Add(apiTimeout)); err != nil || cl.syncedAt == 0 {
			tb.Fatalf("client %s: initial sync: %v", cl.opts.nodeID, err)
		}
		res.SyncSeconds = max(res.SyncSeconds, float64(cl.syncedAt-syncStart)/1e9)
	}
	tb.Logf("%d clients x %d names synced in %.2f s", nClients, rc.Names, res.SyncSeconds)

	// The flips, each through the API server, at a steady rate.
	recording.Store(true)
	flips, writeErrs, achieved := af.flipAll(ctx, tb, rate, seconds)
	res.WriteErrors, res.AchievedPerSec = writeErrs, achieved
	drained := waitDelivered(ctx, rc, clients, flips, time.Now().Add(30*time.Second))
	recording.Store(false)
	if !drained {
		tb.Logf("some flips were not acknowledged within 30 s")
	}
	for _, cl := range clients {
		if err := cl.failed(); err != nil {
			tb.Fatalf("client %s: %v", cl.opts.nodeID, err)
		}
		if cl.recordedErr != nil {
			tb.Fatalf("client %s: %v", cl.opts.nodeID, cl.recordedErr)
		}
	}
	var ack, vis, share, resume, suspend []float64
	for _, f := range flips {
		res.Flips++
		isResume := f.Sig != "router"
		if isResume {
			res.Resumes++
		} else {
			res.Suspends++
		}
		o := rc.ownersOf(f.I)[0]
		t, ok := clients[o].delivered(f.I, f.Sig)
		if !ok {
			res.Censored++
			ack = append(ack, math.Inf(1))
			continue
		}
		a := float64(t-f.T) / 1e6
		ack = append(ack, a)
		if isResume {
			resume = append(resume, a)
		} else {
			suspend = append(suspend, a)
		}
		if v, ok := seen.first(f.I, f.Sig); ok {
			vis = append(vis, float64(v-f.T)/1e6)
			share = append(share, float64(t-v)/1e6)
		}
	}
	for _, s := range [][]float64{ack, vis, share, resume, suspend} {
		slices.Sort(s)
	}
	res.AckP50Ms, res.AckP90Ms, res.AckP99Ms, res.AckMaxMs = quantile(ack, 0.5), quantile(ack, 0.9), quantile(ack, 0.99), quantile(ack, 1)
	res.ResolverP50Ms, res.ResolverP99Ms = quantile(vis, 0.5), quantile(vis, 0.99)
	res.XDSShareP50Ms, res.XDSShareP99Ms = quantile(share, 0.5), quantile(share, 0.99)
	res.ResumeP50Ms, res.SuspendP50Ms = quantile(resume, 0.5), quantile(suspend, 0.5)
	var owned int64
	for _, cl := range clients {
		cl.mu.Lock()
		owned += cl.ownedBytes
		res.OtherBytes += cl.otherBytes
		cl.mu.Unlock()
	}
	if delivered := res.Flips - res.Censored; delivered > 0 {
		res.BytesPerFlip = float64(owned) / float64(delivered)
	}
	tb.Logf("%d flips (%d suspends, %d resumes) at %.1f/s: API write -> ACK p50 %.1f ms p99 %s; -> resolver p50 %.1f ms; resolver -> ACK p99 %s",
		res.Flips, res.Suspends, res.Resumes, achieved, res.AckP50Ms, msOrCensored(res.AckP99Ms), res.ResolverP50Ms, msOrCensored(res.XDSShareP99Ms))
	return res
}

// parallel runs fn for 0..n-1 on apiWorkers goroutines; the first error
// stops it.
func parallel(ctx context.Context, n int, fn func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range apiWorkers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// create writes sandbox i and, for an even i, its ready pod.
func (af *apiFleet) create(ctx context.Context, i int) error {
	mode := "Suspended"
	if i%2 == 0 {
		mode = "Running"
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": sim.Group + "/v1beta1", "kind": "Sandbox",
		"metadata": map[string]any{"name": sandboxName(i), "namespace": namespaceOf(i)},
		"spec":     map[string]any{"operatingMode": mode},
	}}
	got, err := af.dyn.Resource(sandboxGVR).Namespace(namespaceOf(i)).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create sandbox %d: %w", i, err)
	}
	af.uids[i] = got.GetUID()
	if i%2 != 0 {
		return nil
	}
	pod, err := af.createPod(ctx, i, 0)
	if err != nil {
		return err
	}
	if _, err := af.writeReady(ctx, pod, initialIP(i)); err != nil {
		return err
	}
	af.mu.Lock()
	af.running[i], af.pods[i] = true, pod.Name
	af.mu.Unlock()
	return nil
}

// createPod creates generation gen of sandbox i's pod, not ready yet, as
// the sandbox controller does.
func (af *apiFleet) createPod(ctx context.Context, i, gen int) (*corev1.Pod, error) {
	controller := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: sandboxName(i) + "-" + strconv.Itoa(gen), Namespace: namespaceOf(i),
			Labels: map[string]string{kube.SandboxNameHashLabel: sim.NameHash(sandboxName(i))},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: sim.Group + "/v1beta1", Kind: "Sandbox",
				Name: sandboxName(i), UID: af.uids[i], Controller: &controller}},
		},
		Spec: corev1.PodSpec{NodeName: "bench-node", Containers: []corev1.Container{{
			Name: "sandbox", Image: "registry.example.com/agents/sandbox:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: sandboxPort}},
		}}},
	}
	created, err := af.cs.CoreV1().Pods(namespaceOf(i)).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod of sandbox %d: %w", i, err)
	}
	return created, nil
}

// writeReady writes the pod's status Ready on ip, as the kubelet does; it
// returns when the request was sent.
func (af *apiFleet) writeReady(ctx context.Context, pod *corev1.Pod, ip netip.Addr) (int64, error) {
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}}, HostIP: "10.254.0.1",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
	}
	sent := mono()
	if _, err := af.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return 0, fmt.Errorf("pod %s/%s ready: %w", pod.Namespace, pod.Name, err)
	}
	return sent, nil
}

func (af *apiFleet) setMode(ctx context.Context, i int, mode string) error {
	patch := []byte(`{"spec":{"operatingMode":"` + mode + `"}}`)
	_, err := af.dyn.Resource(sandboxGVR).Namespace(namespaceOf(i)).Patch(ctx, sandboxName(i), types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("sandbox %d %s: %w", i, mode, err)
	}
	return nil
}

// flip suspends or resumes sandbox i through the API server, as the
// activator and the sandbox controller would, and returns the moment the
// write that changes its route was sent. A suspend changes it with the
// operatingMode patch (the sandbox is suspending: no longer routed to its
// pod), then deletes the pod; a resume patches operatingMode, creates a new
// pod, and changes the route with the pod's Ready status.
func (af *apiFleet) flip(ctx context.Context, i, gen int) (flipRecord, error) {
	af.mu.Lock()
	running, pod := af.running[i], af.pods[i]
	af.mu.Unlock()
	if running {
		t := mono()
		if err := af.setMode(ctx, i, "Suspended"); err != nil {
			return flipRecord{}, err
		}
		zero := int64(0)
		err := af.cs.CoreV1().Pods(namespaceOf(i)).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			return flipRecord{}, fmt.Errorf("delete pod %s: %w", pod, err)
		}
		af.mu.Lock()
		af.running[i], af.pods[i] = false, ""
		af.mu.Unlock()
		return flipRecord{I: i, Sig: "router", T: t}, nil
	}
	if err := af.setMode(ctx, i, "Running"); err != nil {
		return flipRecord{}, err
	}
	p, err := af.createPod(ctx, i, gen)
	if err != nil {
		return flipRecord{}, err
	}
	af.mu.Lock()
	ip := resumedIP(af.resumes)
	af.resumes++
	af.mu.Unlock()
	t, err := af.writeReady(ctx, p, ip)
	if err != nil {
		return flipRecord{}, err
	}
	af.mu.Lock()
	af.running[i], af.pods[i] = true, p.Name
	af.mu.Unlock()
	return flipRecord{I: i, Sig: "pod:" + netip.AddrPortFrom(ip, sandboxPort).String(), T: t}, nil
}

// flipAll flips distinct random sandboxes at rate for seconds, handing
// each to a pool of writers; a flip starts late when every writer is busy.
func (af *apiFleet) flipAll(ctx context.Context, tb testing.TB, rate, seconds float64) ([]flipRecord, int, float64) {
	total := int(rate*seconds + 0.5)
	order := rand.New(rand.NewPCG(1, 0x5eed)).Perm(len(af.uids))[:total]
	work := make(chan int, total)
	var mu sync.Mutex
	var flips []flipRecord
	var errs int
	var wg sync.WaitGroup
	for range apiWorkers {
		wg.Go(func() {
			for i := range work {
				f, err := af.flip(ctx, i, 1)
				mu.Lock()
				if err != nil {
					if errs == 0 {
						tb.Logf("flip: %v", err)
					}
					errs++
				} else {
					flips = append(flips, f)
				}
				mu.Unlock()
			}
		})
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for k, i := range order {
		if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
			time.Sleep(d)
		}
		work <- i
	}
	close(work)
	wg.Wait()
	return flips, errs, float64(total) / time.Since(start).Seconds()
}

// waitResolved waits until the resolver routes every sandbox as written.
func waitResolved(tb testing.TB, kr *kube.Resolver, af *apiFleet) {
	deadline := time.Now().Add(apiTimeout)
	for {
		missing := 0
		for i := range af.uids {
			r := kr.Lookup(keyOf(i))
			if af.running[i] != (r.State == resolver.StateRunning) || (!af.running[i] && r.State != resolver.StateSuspended) {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the resolver does not route %d of %d sandboxes as written", missing, len(af.uids))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// visibility records when the resolver's feed reported each sandbox in
// each state.
type visibility struct {
	mu sync.Mutex
	at map[int][]delivery
}

func (v *visibility) follow(ctx context.Context, fd resolver.Feed, kr *kube.Resolver) {
	for {
		keys, err := fd.Next(ctx)
		if err != nil {
			return
		}
		t := mono()
		for _, k := range keys {
			i := indexOfKey(k)
			if i < 0 {
				continue
			}
			sig := signature(kr.Lookup(resolver.Key{Namespace: k.Namespace, Name: k.Name}))
			v.mu.Lock()
			v.at[i] = append(v.at[i], delivery{sig: sig, ack: t})
			v.mu.Unlock()
		}
	}
}

func (v *visibility) first(i int, sig string) (int64, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, d := range v.at[i] {
		if d.sig == sig {
			return d.ack, true
		}
	}
	return 0, false
}
