package activator

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
	"github.com/sandbox-router/sandbox-router/resolver/kube"
)

const (
	// waitTimeout bounds every wait for a state to show.
	waitTimeout = 60 * time.Second
	// startDelay is the sims' time from creating a pod to its Ready
	// status: every resume holds requests at least this long.
	startDelay = 500 * time.Millisecond
	// grpcPort is the second port of every sim pod, declared (by its
	// container port name) as gRPC, so the router speaks h2c to it.
	grpcPort uint16 = 9000
	// healthPort is the third, also declared gRPC, served by a real
	// grpc-go server with the standard health service.
	healthPort uint16 = 9001

	// The annotations' names are the resolver's.
	idleAnnotation     = kube.IdleTimeoutAnnotation
	holdAnnotation     = kube.HoldTimeoutAnnotation
	activityAnnotation = kube.LastActivityAnnotation
)

// ipBase keeps this package's pod addresses apart from the other e2e
// packages' sims, which go test may run at the same time.
var ipBase = netip.MustParseAddr("127.1.0.1")

var sandboxGVR = schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}

func TestMain(m *testing.M) {
	code := m.Run()
	routerproc.RemoveShared()
	if shared.c != nil {
		if err := shared.c.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
		}
	}
	os.Exit(code)
}

// shared is the API server the package's tests share: each test brings
// its own namespaces (never "default"), sims and routers, so nothing one
// test leaves behind is seen by another. Benchmarks start one of their
// own, so that nothing a test left running disturbs what they measure.
var shared struct {
	once sync.Once
	c    *cluster.Cluster
	err  error
}

// clusterFor returns the shared API server for a test, a fresh one for a
// benchmark; either has the CRDs and the router's grants.
func clusterFor(tb testing.TB) *cluster.Cluster {
	tb.Helper()
	if _, bench := tb.(*testing.B); bench {
		c := cluster.Start(tb)
		if err := prepare(tb.Context(), c); err != nil {
			tb.Fatal(err)
		}
		return c
	}
	if testing.Short() {
		tb.Skip("cluster: real etcd + kube-apiserver test skipped in -short mode")
	}
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a cold build takes minutes
		defer cancel()
		shared.c, shared.err = cluster.New(ctx, cluster.Options{})
		if shared.err == nil {
			shared.err = prepare(ctx, shared.c)
		}
	})
	if shared.err != nil {
		tb.Fatalf("cluster: %v", shared.err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			shared.c.DumpLogs(tb.Logf)
		}
	})
	return shared.c
}

func prepare(ctx context.Context, c *cluster.Cluster) error {
	if err := c.ApplyCRDs(ctx); err != nil {
		return fmt.Errorf("ApplyCRDs: %w", err)
	}
	if err := c.GrantRouter(ctx); err != nil {
		return fmt.Errorf("GrantRouter: %w", err)
	}
	return nil
}

func binary(tb testing.TB) string {
	tb.Helper()
	bin, err := routerproc.Shared()
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// env is a cluster with the CRDs, the router's grants, one sim per
// namespace set, admin clients and a watch of every Sandbox.
type env struct {
	c     *cluster.Cluster
	dyn   dynamic.Interface
	cs    kubernetes.Interface
	sims  map[string]*sim.Sim // by namespace ("" for a sim of all namespaces)
	watch *watcher

	mu     sync.Mutex
	killed map[*routerproc.Proc]bool
}

// simSpec is one sim: the namespaces it plays the controller for, and
// whether its pods wait for MarkReady instead of the start delay.
type simSpec struct {
	namespaces  []string
	manualReady bool
	// kubelet, when set, plays the kubelet's start sequence instead.
	kubelet *sim.Kubelet
}

// newEnv returns the API server (see clusterFor) with the namespaces of
// sims created, a sim started for each spec, and a watch of every Sandbox.
func newEnv(tb testing.TB, sims ...simSpec) *env {
	tb.Helper()
	if len(sims) == 0 {
		tb.Fatal("newEnv: name the test's namespaces")
	}
	c := clusterFor(tb)
	ctx := tb.Context()
	e := &env{
		c: c, dyn: dynamic.NewForConfigOrDie(c.AdminConfig()), cs: kubernetes.NewForConfigOrDie(c.AdminConfig()),
		sims: map[string]*sim.Sim{}, killed: map[*routerproc.Proc]bool{},
	}
	for _, spec := range sims {
		if err := cluster.CreateNamespaces(ctx, e.cs, spec.namespaces...); err != nil {
			tb.Fatal(err)
		}
		s, err := sim.New(sim.Options{
			Config:      c.AdminConfig(),
			Namespaces:  spec.namespaces,
			StartDelay:  startDelay,
			ManualReady: spec.manualReady,
			Kubelet:     spec.kubelet,
			Ports:       []uint16{sim.DefaultPort, grpcPort, healthPort},
			PortNames:   map[uint16]string{grpcPort: "grpc", healthPort: "grpc-health"},
			GRPCPorts:   []uint16{healthPort},
			IPBase:      ipBase,
			Logf:        tb.Logf,
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(s.Close)
		if err := s.Run(ctx); err != nil {
			tb.Fatalf("sim: %v", err)
		}
		for _, ns := range spec.namespaces {
			e.sims[ns] = s
		}
	}
	e.watch = newWatcher(tb, e.dyn)
	return e
}

// startRouter runs the router binary as the non-admin user and waits until
// its caches synced. Every replica has the activator on; single-replica
// tests add --leader-election=false.
func (e *env) startRouter(tb testing.TB, args ...string) *routerproc.Proc {
	tb.Helper()
	kubeconfig := filepath.Join(tb.TempDir(), "router.kubeconfig")
	if err := e.c.WriteKubeconfig(kubeconfig, e.c.RouterToken); err != nil {
		tb.Fatal(err)
	}
	args = append([]string{"--kubeconfig", kubeconfig, "--allow-loopback-pod-ip", "--access-log", "off"}, args...)
	logPath := filepath.Join(tb.TempDir(), "router.log")
	p, err := routerproc.Start(tb.Context(), routerproc.Options{Bin: binary(tb), Args: args, LogPath: logPath})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		err := p.Stop()
		e.mu.Lock()
		killed := e.killed[p]
		e.mu.Unlock()
		if err != nil && !killed {
			tb.Errorf("router exit: %v", err)
		}
		if tb.Failed() {
			tb.Logf("router (pid %d, %s, %v) log, without client-go's lines:\n%s", p.Pid(), p.HTTPAddr, args[4:], routerLog(logPath))
		}
		if dir := os.Getenv("ACTIVATOR_E2E_KEEP_LOGS"); dir != "" {
			if data, err := os.ReadFile(logPath); err == nil {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("router-%d.log", p.Pid())), data, 0o644)
			}
		}
	})
	if err := p.WaitReady(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return p
}

// kill stops a router with SIGKILL, as a crash would.
func (e *env) kill(p *routerproc.Proc) {
	e.mu.Lock()
	e.killed[p] = true
	e.mu.Unlock()
	p.Kill()
}

// routerLog is the end of a router's log file, without the lines of
// client-go (leader election retries fill a debug log).
func routerLog(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if !strings.Contains(line, `"component":"client-go"`) {
			b.WriteString(line)
		}
	}
	s := b.String()
	if len(s) > 30000 {
		s = s[len(s)-30000:]
	}
	return s
}

// createSandbox creates a v1beta1 Sandbox, running or suspended.
func (e *env) createSandbox(tb testing.TB, ns, name string, suspended bool, annotations map[string]string) types.UID {
	tb.Helper()
	mode := "Running"
	if suspended {
		mode = "Suspended"
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": sim.Group + "/v1beta1", "kind": "Sandbox",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"operatingMode": mode},
	}}
	if annotations != nil {
		obj.SetAnnotations(annotations)
	}
	got, err := e.dyn.Resource(sandboxGVR).Namespace(ns).Create(tb.Context(), obj, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create sandbox %s/%s: %v", ns, name, err)
	}
	return got.GetUID()
}

// setMode patches spec.operatingMode as an admin would, and returns when
// the request was sent.
func (e *env) setMode(tb testing.TB, ns, name string, suspended bool) time.Time {
	tb.Helper()
	patch := `{"spec":{"operatingMode":"Running"}}`
	if suspended {
		patch = `{"spec":{"operatingMode":"Suspended"}}`
	}
	sent := time.Now()
	if _, err := e.dyn.Resource(sandboxGVR).Namespace(ns).Patch(tb.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		tb.Fatalf("patch %s/%s: %v", ns, name, err)
	}
	return sent
}

func (e *env) deleteSandbox(tb testing.TB, ns, name string) {
	tb.Helper()
	if err := e.dyn.Resource(sandboxGVR).Namespace(ns).Delete(tb.Context(), name, metav1.DeleteOptions{}); err != nil {
		tb.Fatalf("delete %s/%s: %v", ns, name, err)
	}
}

// waitRunning waits until the sim's pod of the sandbox is Ready and the
// Sandbox status says so.
func (e *env) waitRunning(tb testing.TB, ns, name string) sim.PodInfo {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), waitTimeout)
	defer cancel()
	pod, err := e.sims[ns].WaitPod(ctx, ns, name, func(p sim.PodInfo) bool { return p.Ready })
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := e.watch.wait(ctx, ns, name, 0, func(o sandboxObs) bool { return !o.suspended && o.readyCond }); err != nil {
		tb.Fatalf("%s/%s never reported Ready: %v", ns, name, err)
	}
	return pod
}

// ---- the Sandbox watch ----

// sandboxObs is one state of a Sandbox as an admin watch saw it.
type sandboxObs struct {
	at            time.Time
	suspended     bool // spec.operatingMode is Suspended
	suspendedCond bool // status condition Suspended is True
	readyCond     bool // status condition Ready is True
	deleted       bool
	lastActivity  string
}

// watcher records every state of every Sandbox its informer sees, in
// order, per namespace/name.
type watcher struct {
	mu      sync.Mutex
	history map[string][]sandboxObs
	changed chan struct{} // closed and replaced at every new state
}

func newWatcher(tb testing.TB, dyn dynamic.Interface) *watcher {
	w := &watcher{history: map[string][]sandboxObs{}, changed: make(chan struct{})}
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	inf := factory.ForResource(sandboxGVR).Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.record(obj, false) },
		UpdateFunc: func(_, obj any) { w.record(obj, false) },
		DeleteFunc: func(obj any) { w.record(obj, true) },
	}); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ctx) })
	tb.Cleanup(func() { cancel(); wg.Wait() })
	if !cache.WaitForCacheSync(tb.Context().Done(), inf.HasSynced) {
		tb.Fatal("sandbox watch did not sync")
	}
	return w
}

func (w *watcher) record(obj any, deleted bool) {
	now := time.Now()
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	o := sandboxObs{at: now, deleted: deleted, lastActivity: u.GetAnnotations()[activityAnnotation]}
	mode, _, _ := unstructured.NestedString(u.Object, "spec", "operatingMode")
	o.suspended = mode == "Suspended"
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		switch {
		case m["type"] == "Suspended" && m["status"] == "True":
			o.suspendedCond = true
		case m["type"] == "Ready" && m["status"] == "True":
			o.readyCond = true
		}
	}
	k := u.GetNamespace() + "/" + u.GetName()
	w.mu.Lock()
	w.history[k] = append(w.history[k], o)
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// len is how many states of the sandbox were seen so far: an index to
// wait from.
func (w *watcher) len(ns, name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.history[ns+"/"+name])
}

// last is the newest state seen.
func (w *watcher) last(ns, name string) (sandboxObs, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.history[ns+"/"+name]
	if len(h) == 0 {
		return sandboxObs{}, false
	}
	return h[len(h)-1], true
}

// wait returns the first state at index from or later that satisfies
// cond, with its index.
func (w *watcher) wait(ctx context.Context, ns, name string, from int, cond func(sandboxObs) bool) (int, error) {
	k := ns + "/" + name
	for {
		w.mu.Lock()
		h := w.history[k]
		ch := w.changed
		w.mu.Unlock()
		for i := from; i < len(h); i++ {
			if cond(h[i]) {
				return i, nil
			}
		}
		from = max(from, len(h))
		select {
		case <-ch:
		case <-ctx.Done():
			return -1, ctx.Err()
		}
	}
}

// at returns the state at index i.
func (w *watcher) at(ns, name string, i int) sandboxObs {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.history[ns+"/"+name][i]
}

// holds watches the sandbox for d and fails the test if a state
// satisfying bad shows up meanwhile (a condition over a bounded window).
func (w *watcher) holds(tb testing.TB, ns, name string, d time.Duration, what string, bad func(sandboxObs) bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), d)
	defer cancel()
	i, err := w.wait(ctx, ns, name, w.len(ns, name), bad)
	if err == nil {
		o := w.at(ns, name, i)
		tb.Fatalf("%s/%s: %s: state %+v", ns, name, what, o)
	}
	if tb.Context().Err() != nil {
		tb.Fatal(tb.Context().Err())
	}
}

func isSuspended(o sandboxObs) bool { return o.suspended }

// ---- requests through the router ----

// reply is what the router answered: the status, the backend's JSON
// (which sandbox and pod served) or the router's error.
type reply struct {
	Status     int
	Sandbox    string `json:"sandbox"`
	Pod        string `json:"pod"`
	Code       string `json:"code"`
	Detail     string `json:"detail"`
	RetryAfter string
	Err        error
}

func (r reply) String() string {
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	return fmt.Sprintf("%d sandbox=%q pod=%q code=%q detail=%q retry-after=%q", r.Status, r.Sandbox, r.Pod, r.Code, r.Detail, r.RetryAfter)
}

func (r reply) servedBy(sandbox string) bool {
	return r.Err == nil && r.Status == http.StatusOK && r.Sandbox == sandbox
}

func (r reply) is(status int, code string) bool {
	return r.Err == nil && r.Status == status && r.Code == code
}

// client talks to the routers: enough idle connections that 200
// concurrent requests keep theirs, and a deadline far above any hold.
var client = &http.Client{Timeout: 2 * waitTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// get sends GET / for the sandbox through the router.
func get(ctx context.Context, p *routerproc.Proc, ns, name string) reply {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTPAddr+"/", nil)
	if err != nil {
		return reply{Err: err}
	}
	setKey(req.Header, ns, name)
	return do(req)
}

func do(req *http.Request) reply {
	resp, err := client.Do(req)
	if err != nil {
		return reply{Err: err}
	}
	defer resp.Body.Close()
	r := reply{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	r.Err = jsonBody(resp, &r)
	return r
}

// jsonBody reads the response body into r: the backend's JSON or the
// router's error; a body that is not JSON lands in r.Detail.
func jsonBody(resp *http.Response, r *reply) error {
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if json.Unmarshal(body, r) != nil {
		r.Detail = string(body)
	}
	return nil
}

func setKey(h http.Header, ns, name string) {
	h.Set("X-Sandbox-ID", name)
	h.Set("X-Sandbox-Namespace", ns)
}

// eventually sends requests until one satisfies ok.
func eventually(tb testing.TB, p *routerproc.Proc, ns, name, what string, ok func(reply) bool) reply {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last reply
	for time.Now().Before(deadline) {
		if last = get(tb.Context(), p, ns, name); ok(last) {
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("%s: last reply %v", what, last)
	return last
}

// ---- metrics ----

// scrape reads the router's /metrics: value by series, as the text format
// names it (`name` or `name{label="value",...}`).
func scrape(p *routerproc.Proc) (map[string]float64, error) {
	resp, err := http.Get("http://" + p.AdminAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	for lines.Scan() {
		line := lines.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, lines.Err()
}

// metric is one series' value (0 when absent).
func metric(tb testing.TB, p *routerproc.Proc, series string) float64 {
	tb.Helper()
	m, err := scrape(p)
	if err != nil {
		tb.Fatalf("metrics: %v", err)
	}
	return m[series]
}

// metricSum adds up every series of a metric, whatever its labels.
func metricSum(tb testing.TB, p *routerproc.Proc, name string) float64 {
	tb.Helper()
	m, err := scrape(p)
	if err != nil {
		tb.Fatalf("metrics: %v", err)
	}
	sum := 0.0
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}

// waitMetric waits until the series satisfies ok, and returns its value.
func waitMetric(tb testing.TB, p *routerproc.Proc, series string, ok func(float64) bool) float64 {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	var v float64
	for {
		m, err := scrape(p)
		if err == nil {
			if v = m[series]; ok(v) {
				return v
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("metric %s: last value %v (err %v)", series, v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitMetricSum waits until metricSum satisfies ok, and returns it.
func waitMetricSum(tb testing.TB, p *routerproc.Proc, name string, ok func(float64) bool) float64 {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		v := metricSum(tb, p, name)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			tb.Fatalf("metric %s: last sum %v", name, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const (
	mHeld         = "sandbox_router_activator_held_requests"
	mHoldTimeouts = "sandbox_router_activator_hold_timeouts_total"
	mResumes      = "sandbox_router_activator_resumes_total"
	mOverflowSbx  = `sandbox_router_activator_overflow_total{bound="sandbox"}`
	mSuspensions  = `sandbox_router_activator_suspensions_total{reason="idle"}`
	mLeader       = "sandbox_router_activator_leader"
	mActivityOK   = `sandbox_router_activator_activity_writes_total{result="ok"}`
)

// ---- the audit log ----

// routerPatches are the patches of the sandbox's main resource made by
// the router's user.
func routerPatches(evs []cluster.AuditEvent, ns, name string) []cluster.AuditEvent {
	var out []cluster.AuditEvent
	for _, ev := range evs {
		if ev.Verb == "patch" && ev.User == "router" && ev.APIGroup == sim.Group && ev.Resource == "sandboxes" &&
			ev.Subresource == "" && ev.Namespace == ns && ev.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

// waitRouterPatches waits until the audit log holds at least n router
// patches of the sandbox and returns them all.
func (e *env) waitRouterPatches(tb testing.TB, ns, name string, n int) []cluster.AuditEvent {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), waitTimeout)
	defer cancel()
	evs, err := e.c.WaitAuditEvents(ctx, func(evs []cluster.AuditEvent) bool { return len(routerPatches(evs, ns, name)) >= n })
	if err != nil {
		tb.Fatalf("audit: %d router patches of %s/%s, want %d: %v", len(routerPatches(evs, ns, name)), ns, name, n, err)
	}
	return routerPatches(evs, ns, name)
}

// ---- the Lease ----

const leaseName = "sandbox-router-idle-suspender"

// waitLeader waits until the Lease names one of the replicas and that
// replica says it leads, and returns its index.
func (e *env) waitLeader(tb testing.TB, ids []string, procs []*routerproc.Proc, exclude string) int {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	holder := ""
	for time.Now().Before(deadline) {
		l, err := e.cs.CoordinationV1().Leases(cluster.RouterNamespace).Get(tb.Context(), leaseName, metav1.GetOptions{})
		if err == nil && l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
			for i, id := range ids {
				if id == holder && id != exclude && metric(tb, procs[i], mLeader) == 1 {
					return i
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("no leader among %v (lease holder %q)", ids, holder)
	return -1
}
