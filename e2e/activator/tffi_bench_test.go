package activator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sandbox-router/sandbox-router/bench/tffi/tffi"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
	"github.com/sandbox-router/sandbox-router/resolver/kube"
)

// Time to first instruction (TFFI): how long after a woken sandbox's
// server begins to listen the request that woke it gets its first
// response byte. Without the router's fast path that is the kubelet's
// next readiness probe (up to a probe period later) plus the Ready status
// write and its propagation; with it, the router's own probe of the pod
// (every --probe-interval, 10ms) and the proxying.

var (
	tffiWakeups     = flag.Int("tffi-wakeups", 100, "wake-ups per configuration measured by BenchmarkTFFI")
	tffiConcurrency = flag.Int("tffi-concurrency", 20, "wake-ups of different sandboxes BenchmarkTFFI runs at once")
	tffiCSV         = flag.String("tffi-csv", "", "write BenchmarkTFFI's wake-ups here, one CSV row each (ms)")
)

// The sims' kubelet: the address shortly after the pod is created, the
// server listening 200-500ms after that (uniformly: not aligned with the
// probe ticks), no initialisation time, an HTTP readiness probe every
// period from the address write on.
const (
	tffiAddressDelay = 50 * time.Millisecond
	tffiListenDelay  = 200 * time.Millisecond
	tffiListenJitter = 300 * time.Millisecond
)

func tffiKubelet(period time.Duration) *sim.Kubelet {
	return &sim.Kubelet{
		AddressDelay: tffiAddressDelay,
		ListenDelay:  tffiListenDelay, ListenJitter: tffiListenJitter,
		Probe: sim.ProbeHTTP, ProbePeriod: period,
	}
}

// tffiConfig is one configuration: the kubelet's probe period (one sim and
// namespace per period) and whether the fast path is on. Off is the
// Sandbox annotation sandbox-router.dev/release-on: ready, on the same
// router.
type tffiConfig struct {
	period time.Duration
	fast   bool
}

func (c tffiConfig) name() string {
	if c.fast {
		return c.period.String() + "/probe"
	}
	return c.period.String() + "/ready"
}

// label is name() for metric units, which take no slash.
func (c tffiConfig) label() string { return strings.ReplaceAll(c.name(), "/", "-") }

func (c tffiConfig) namespace() string { return "tffi-" + c.period.String() }

// sandbox is the i-th sandbox of the configuration.
func (c tffiConfig) sandbox(i int) string {
	if c.fast {
		return fmt.Sprintf("probe-%02d", i)
	}
	return fmt.Sprintf("ready-%02d", i)
}

// tffiConfigs are the configurations of the periods, the fast path on
// then off for each.
func tffiConfigs(periods ...time.Duration) []tffiConfig {
	var cs []tffiConfig
	for _, p := range periods {
		cs = append(cs, tffiConfig{period: p, fast: true}, tffiConfig{period: p, fast: false})
	}
	return cs
}

// tffiWake is one measured wake-up.
type tffiWake struct {
	sandbox, pod string
	// sent and firstByte are the client's; listening is when the new
	// pod's server began to listen (the sim's clock is this process's).
	sent, firstByte, listening time.Time
	// line is the router's log line of the wake-up.
	line tffiLine
}

// tffiResult is one configuration's wake-ups.
type tffiResult struct {
	cfg   tffiConfig
	wakes []tffiWake
}

func (r *tffiResult) each(f func(w tffiWake) time.Duration) []time.Duration {
	d := make([]time.Duration, 0, len(r.wakes))
	for _, w := range r.wakes {
		d = append(d, f(w))
	}
	return d
}

// tffi is first byte - listening.
func (r *tffiResult) tffi() []time.Duration {
	return r.each(func(w tffiWake) time.Duration { return w.firstByte.Sub(w.listening) })
}

// hold is first byte - request sent.
func (r *tffiResult) hold() []time.Duration {
	return r.each(func(w tffiWake) time.Duration { return w.firstByte.Sub(w.sent) })
}

// start is listening - request sent: the resume and the pod's start.
func (r *tffiResult) start() []time.Duration {
	return r.each(func(w tffiWake) time.Duration { return w.listening.Sub(w.sent) })
}

// phase is the router's time to the phase, for the wake-ups that reached it.
func (r *tffiResult) phase(p string) []time.Duration {
	var d []time.Duration
	for _, w := range r.wakes {
		if v, ok := w.line.phases[p]; ok {
			d = append(d, v)
		}
	}
	return d
}

func (r *tffiResult) releasedOn(on string) int {
	n := 0
	for _, w := range r.wakes {
		if w.line.releasedOn == on {
			n++
		}
	}
	return n
}

// tffiBench is the run's cluster: one sim per probe period, the sandboxes
// of each configuration created suspended, one router at debug level and
// a follower of its log.
type tffiBench struct {
	e   *env
	p   *routerproc.Proc
	log *tffiLog
}

// startTFFI starts the cluster for the configurations with perConfig
// sandboxes each; more, when set, creates other objects before the router
// starts.
func startTFFI(tb testing.TB, configs []tffiConfig, perConfig int, more func(e *env)) *tffiBench {
	tb.Helper()
	var specs []simSpec
	var periods []time.Duration
	for _, c := range configs {
		if !slices.Contains(periods, c.period) {
			periods = append(periods, c.period)
			specs = append(specs, simSpec{namespaces: []string{c.namespace()}, kubelet: tffiKubelet(c.period)})
		}
	}
	e := newEnv(tb, specs...)
	for _, c := range configs {
		var ann map[string]string
		if !c.fast {
			ann = map[string]string{kube.ReleaseAnnotation: tffi.ModeReady}
		}
		for i := range perConfig {
			e.createSandbox(tb, c.namespace(), c.sandbox(i), true, ann)
		}
	}
	if more != nil {
		more(e)
	}
	ctx, cancel := context.WithTimeout(tb.Context(), waitTimeout)
	defer cancel()
	for _, c := range configs {
		for i := range perConfig {
			if _, err := e.watch.wait(ctx, c.namespace(), c.sandbox(i), 0, func(o sandboxObs) bool { return o.suspendedCond }); err != nil {
				tb.Fatalf("%s/%s never reported Suspended: %v", c.namespace(), c.sandbox(i), err)
			}
		}
	}
	p, logPath := startTFFIRouter(tb, e, "--leader-election=false", "--log-level", "debug")
	return &tffiBench{e: e, p: p, log: followTFFILog(tb, logPath)}
}

// startTFFIRouter is env.startRouter with the log file's path, for the
// follower.
func startTFFIRouter(tb testing.TB, e *env, args ...string) (*routerproc.Proc, string) {
	tb.Helper()
	dir := tb.TempDir()
	kubeconfig := filepath.Join(dir, "router.kubeconfig")
	if err := e.c.WriteKubeconfig(kubeconfig, e.c.RouterToken); err != nil {
		tb.Fatal(err)
	}
	args = append([]string{"--kubeconfig", kubeconfig, "--allow-loopback-pod-ip", "--access-log", "off"}, args...)
	logPath := filepath.Join(dir, "router.log")
	p, err := routerproc.Start(tb.Context(), routerproc.Options{Bin: binary(tb), Args: args, LogPath: logPath})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Errorf("router exit: %v", err)
		}
		if tb.Failed() {
			tb.Logf("router (pid %d) log, without client-go's lines:\n%s", p.Pid(), routerLog(logPath))
		}
	})
	if err := p.WaitReady(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return p, logPath
}

// tffiSpread is the time over which the sandboxes' first wake-ups are
// spread: conc requests sent at the same instant would measure a burst of
// simultaneous pod starts on two cores rather than the wake-up.
const tffiSpread = time.Second

// run measures n wake-ups of the configuration, conc at a time: each of
// conc sandboxes is woken in turn, suspended again between its wake-ups;
// the i-th sandbox starts i*tffiSpread/conc after the first.
func (b *tffiBench) run(ctx context.Context, c tffiConfig, n, conc int) (*tffiResult, error) {
	workers := min(conc, n)
	results := make([][]tffiWake, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		count := n / workers
		if i < n%workers {
			count++
		}
		wg.Go(func() {
			ns, name := c.namespace(), c.sandbox(i)
			start := time.NewTimer(time.Duration(i) * tffiSpread / time.Duration(workers))
			defer start.Stop()
			select {
			case <-start.C:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			for k := range count {
				if k > 0 {
					if err := b.suspend(ctx, ns, name); err != nil {
						errs[i] = fmt.Errorf("%s: wake-up %d: %w", name, k+1, err)
						return
					}
				}
				w, err := b.wake(ctx, ns, name, k)
				if err != nil {
					errs[i] = fmt.Errorf("%s: wake-up %d: %w", name, k+1, err)
					return
				}
				results[i] = append(results[i], w)
			}
		})
	}
	wg.Wait()
	r := &tffiResult{cfg: c}
	for _, ws := range results {
		r.wakes = append(r.wakes, ws...)
	}
	return r, errors.Join(errs...)
}

// suspend suspends the sandbox and waits until the sim stopped its pod
// and wrote the Suspended condition.
func (b *tffiBench) suspend(ctx context.Context, ns, name string) error {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	from := b.e.watch.len(ns, name)
	if _, err := b.e.dyn.Resource(sandboxGVR).Namespace(ns).Patch(ctx, name, types.MergePatchType,
		[]byte(`{"spec":{"operatingMode":"Suspended"}}`), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("suspend: %w", err)
	}
	if _, err := b.e.watch.wait(ctx, ns, name, from, func(o sandboxObs) bool { return o.suspended && o.suspendedCond }); err != nil {
		return fmt.Errorf("not suspended: %w", err)
	}
	return nil
}

// wake sends one request to the suspended sandbox, times its first byte,
// reads the new pod's listening time from the sim, and waits for the
// router's log line of the wake-up, its k-th of the sandbox (the episode
// ends once the router saw the pod Ready).
func (b *tffiBench) wake(ctx context.Context, ns, name string, k int) (tffiWake, error) {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	w := tffiWake{sandbox: name}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotFirstResponseByte: func() { w.firstByte = time.Now() },
	}), http.MethodGet, "http://"+b.p.HTTPAddr+"/", nil)
	if err != nil {
		return w, err
	}
	setKey(req.Header, ns, name)
	w.sent = time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return w, err
	}
	r := reply{Status: resp.StatusCode}
	r.Err = jsonBody(resp, &r)
	resp.Body.Close()
	if !r.servedBy(name) {
		return w, fmt.Errorf("reply %v", r)
	}
	info, ok := b.e.sims[ns].PodInfo(ns, name)
	switch {
	case !ok || info.Name != r.Pod:
		return w, fmt.Errorf("served by pod %s, the sim's is %+v", r.Pod, info)
	case info.ListeningAt.IsZero():
		return w, fmt.Errorf("pod %s served but does not listen", r.Pod)
	}
	w.pod, w.listening = info.Name, info.ListeningAt
	if w.line, err = b.log.wait(ctx, ns, name, k); err != nil {
		return w, fmt.Errorf("the router's wake-up line: %w", err)
	}
	return w, nil
}

// ---- the router's wake-up log lines ----

// tffiLine is one "wake-up" line of the router's debug log.
type tffiLine struct {
	namespace, sandbox, releasedOn string
	phases                         map[string]time.Duration
}

// parseTFFILine reads a wake-up line: the phases are durations, which
// slog's JSON handler writes as integer nanoseconds.
func parseTFFILine(data []byte) (tffiLine, bool) {
	if !bytes.Contains(data, []byte(`"wake-up"`)) {
		return tffiLine{}, false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil || m["msg"] != "wake-up" {
		return tffiLine{}, false
	}
	l := tffiLine{phases: map[string]time.Duration{}}
	l.namespace, _ = m["namespace"].(string)
	l.sandbox, _ = m["sandbox"].(string)
	l.releasedOn, _ = m["released_on"].(string)
	for _, p := range tffi.Phases {
		if n, ok := m[p].(json.Number); ok {
			if v, err := n.Int64(); err == nil {
				l.phases[p] = time.Duration(v)
			}
		}
	}
	return l, true
}

// tffiLog follows the router's log file and keeps its wake-up lines by
// sandbox, in order.
type tffiLog struct {
	mu      sync.Mutex
	lines   map[string][]tffiLine // by namespace/sandbox
	changed chan struct{}         // closed and replaced at every new line
}

// tffiLogPoll is how often the follower reads what the router appended.
const tffiLogPoll = 10 * time.Millisecond

func followTFFILog(tb testing.TB, path string) *tffiLog {
	l := &tffiLog{lines: map[string][]tffiLine{}, changed: make(chan struct{})}
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		defer f.Close()
		r := bufio.NewReaderSize(f, 64<<10)
		var partial []byte
		t := time.NewTicker(tffiLogPoll)
		defer t.Stop()
		for {
			for {
				line, err := r.ReadBytes('\n')
				partial = append(partial, line...)
				if err != nil {
					break // io.EOF: the rest is still being written
				}
				if wl, ok := parseTFFILine(partial); ok {
					l.add(wl)
				}
				partial = partial[:0]
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	tb.Cleanup(func() { cancel(); wg.Wait() })
	return l
}

func (l *tffiLog) add(wl tffiLine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := wl.namespace + "/" + wl.sandbox
	l.lines[k] = append(l.lines[k], wl)
	close(l.changed)
	l.changed = make(chan struct{})
}

// wait returns the sandbox's k-th wake-up line (from 0) once it is logged.
func (l *tffiLog) wait(ctx context.Context, ns, name string, k int) (tffiLine, error) {
	for {
		l.mu.Lock()
		lines := l.lines[ns+"/"+name]
		ch := l.changed
		l.mu.Unlock()
		if len(lines) > k {
			return lines[k], nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return tffiLine{}, fmt.Errorf("%d wake-up lines of %s/%s, waiting for line %d: %w", len(lines), ns, name, k+1, ctx.Err())
		}
	}
}

// count is how many wake-up lines the sandbox has.
func (l *tffiLog) count(ns, name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines[ns+"/"+name])
}

// ---- the benchmark ----

// tffiRequired are the phases every wake-up line has once the router saw
// the pod Ready (the run waits for that line before the next wake-up).
var tffiRequired = []string{"patch_sent", "patch_acked", "pod_seen", "address_seen", "probe_ok", "ready_seen", "first_byte"}

// checkTFFI checks what does not depend on timing: every wake-up was
// measured, its log line parsed with every phase, and the sandboxes with
// the release-on: ready annotation were released on Ready.
func checkTFFI(tb testing.TB, r *tffiResult, n int) {
	tb.Helper()
	if len(r.wakes) != n {
		tb.Errorf("%s: %d wake-ups measured, want %d", r.cfg.name(), len(r.wakes), n)
	}
	for _, w := range r.wakes {
		for _, p := range tffiRequired {
			if _, ok := w.line.phases[p]; !ok {
				tb.Errorf("%s: %s (pod %s): no %s in the wake-up line %+v", r.cfg.name(), w.sandbox, w.pod, p, w.line)
			}
		}
		want := []string{tffi.ModeProbe, tffi.ModeReady}
		if !r.cfg.fast {
			want = want[1:]
		}
		if !slices.Contains(want, w.line.releasedOn) {
			tb.Errorf("%s: %s released on %q, want one of %q", r.cfg.name(), w.sandbox, w.line.releasedOn, want)
		}
	}
}

// TestTFFISmoke runs BenchmarkTFFI's code with a few wake-ups of the 1s
// configurations, and the bench/tffi command's core (package tffi) for
// two wake-ups per mode, on the same cluster. It asserts no latency.
func TestTFFISmoke(t *testing.T) {
	const (
		n, conc = 4, 2
		cmdNS   = "tffi-1s"
		cmdName = "tffi-cmd"
	)
	configs := tffiConfigs(time.Second)
	b := startTFFI(t, configs, conc, func(e *env) {
		e.createSandbox(t, cmdNS, cmdName, false, nil)
		e.waitRunning(t, cmdNS, cmdName)
	})

	t.Run("wake-ups", func(t *testing.T) {
		var results []*tffiResult
		for _, c := range configs {
			r, err := b.run(t.Context(), c, n, conc)
			if err != nil {
				t.Fatalf("%s: %v", c.name(), err)
			}
			checkTFFI(t, r, n)
			results = append(results, r)
		}
		t.Log("\n" + tffiTable(results))
	})

	t.Run("command", func(t *testing.T) {
		r, err := tffi.Run(t.Context(), tffi.Config{
			Kubeconfig: b.e.c.KubeconfigPath,
			Namespace:  cmdNS, Sandbox: cmdName,
			Router: "http://" + b.p.HTTPAddr, Path: "/",
			N: 2, Modes: []string{tffi.ModeProbe, tffi.ModeReady},
			Metrics: "http://" + b.p.AdminAddr,
			Timeout: waitTimeout,
			Progress: func(format string, args ...any) {
				t.Logf(format, args...)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + r.Markdown())
		if r.Version != "v1beta1" || len(r.Modes) != 2 {
			t.Fatalf("report: version %s, %d modes", r.Version, len(r.Modes))
		}
		for _, m := range r.Modes {
			if len(m.Wakeups) != 2 {
				t.Errorf("%s: %d wake-ups", m.Mode, len(m.Wakeups))
			}
			for i, w := range m.Wakeups {
				if w.Status != http.StatusOK || w.Pod == "" || w.FirstByte.IsZero() || w.PodSeen.IsZero() || w.AddressSeen.IsZero() || w.ReadySeen.IsZero() {
					t.Errorf("%s %d: %+v", m.Mode, i+1, w)
				}
			}
			if m.Router == nil {
				t.Fatalf("%s: no router phases", m.Mode)
			}
			if got := m.Router.Count["first_byte"]; got != 2 {
				t.Errorf("%s: the router counted %v first bytes, want 2", m.Mode, got)
			}
			probe, ready := m.Router.Releases[tffi.ModeProbe], m.Router.Releases[tffi.ModeReady]
			if probe+ready != 2 || (m.Mode == tffi.ModeReady && ready != 2) {
				t.Errorf("%s: released on probe %v, on ready %v", m.Mode, probe, ready)
			}
		}
		// Restored: no release-on annotation (it had none), running.
		got, err := b.e.dyn.Resource(sandboxGVR).Namespace(cmdNS).Get(t.Context(), cmdName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := got.GetAnnotations()[kube.ReleaseAnnotation]; ok {
			t.Errorf("annotation left: %q", v)
		}
		if mode, _, _ := unstructured.NestedString(got.Object, "spec", "operatingMode"); mode != "Running" {
			t.Errorf("operatingMode %q after the run", mode)
		}
		// The router logged one wake-up line per wake-up.
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		if _, err := b.log.wait(ctx, cmdNS, cmdName, 3); err != nil {
			t.Error(err)
		}
		if got := b.log.count(cmdNS, cmdName); got != 4 {
			t.Errorf("%d wake-up lines of the command's sandbox, want 4", got)
		}
	})
}

// BenchmarkTFFI measures the time to first instruction on the real API
// server with the router binary, in one run: the kubelet's probe period 1s
// and 10s, the fast path on and off (the release-on: ready annotation),
// -tffi-wakeups wake-ups each, -tffi-concurrency sandboxes at a time.
// Target: fast path p99 of first byte - listening <= 20ms. Run it with
// -benchtime 1x.
func BenchmarkTFFI(b *testing.B) {
	for b.Loop() {
		n, conc := *tffiWakeups, *tffiConcurrency
		configs := tffiConfigs(time.Second, 10*time.Second)
		bench := startTFFI(b, configs, min(n, conc), nil)
		var results []*tffiResult
		for _, c := range configs {
			began := time.Now()
			r, err := bench.run(b.Context(), c, n, conc)
			if err != nil {
				b.Fatalf("%s: %v", c.name(), err)
			}
			checkTFFI(b, r, n)
			fmt.Printf("%s: %d wake-ups in %v\n", c.name(), len(r.wakes), time.Since(began).Round(time.Second))
			results = append(results, r)
		}
		for _, r := range results {
			l := r.cfg.label()
			b.ReportMetric(ms(tffi.Quantile(r.tffi(), 0.5)), l+"-tffi-p50-ms")
			b.ReportMetric(ms(tffi.Quantile(r.tffi(), 0.99)), l+"-tffi-p99-ms")
			b.ReportMetric(ms(slices.Max(r.tffi())), l+"-tffi-max-ms")
			b.ReportMetric(ms(tffi.Quantile(r.hold(), 0.5)), l+"-hold-p50-ms")
			b.ReportMetric(ms(tffi.Quantile(r.hold(), 0.99)), l+"-hold-p99-ms")
		}
		for i := 0; i+1 < len(results); i += 2 {
			fast, slow := results[i], results[i+1]
			b.ReportMetric(float64(tffi.Quantile(slow.tffi(), 0.5))/float64(tffi.Quantile(fast.tffi(), 0.5)), fast.cfg.period.String()+"-tffi-p50-ready/probe")
		}
		fmt.Println(tffiTable(results)) // b.Log shows only with -v
		if *tffiCSV != "" {
			if err := os.WriteFile(*tffiCSV, []byte(tffiRows(results)), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// tffiRows is every wake-up as CSV: times in ms from the request sent
// (the router's phases from its first held request).
func tffiRows(results []*tffiResult) string {
	var sb strings.Builder
	sb.WriteString("configuration,sandbox,pod,sent_unix_ms,released_on,listening,first_byte,tffi")
	for _, p := range tffi.Phases {
		sb.WriteString(",router_" + p)
	}
	sb.WriteString("\n")
	for _, r := range results {
		for _, w := range r.wakes {
			fmt.Fprintf(&sb, "%s,%s,%s,%d,%s,%.3f,%.3f,%.3f", r.cfg.name(), w.sandbox, w.pod, w.sent.UnixMilli(), w.line.releasedOn,
				ms(w.listening.Sub(w.sent)), ms(w.firstByte.Sub(w.sent)), ms(w.firstByte.Sub(w.listening)))
			for _, p := range tffi.Phases {
				if d, ok := w.line.phases[p]; ok {
					fmt.Fprintf(&sb, ",%.3f", ms(d))
				} else {
					sb.WriteString(",")
				}
			}
			sb.WriteString("\n")
		}
	}
	return sb.String()
}

// tffiTable is the run's figures as markdown.
func tffiTable(results []*tffiResult) string {
	var sb strings.Builder
	stat := func(d []time.Duration) string {
		if len(d) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f / %.1f / %.1f", ms(tffi.Quantile(d, 0.5)), ms(tffi.Quantile(d, 0.99)), ms(slices.Max(d)))
	}
	fmt.Fprintf(&sb, "TFFI: sim kubelet address +%v, listening %v-%v after it, HTTP readiness probe; ms, p50 / p99 / max\n\n",
		tffiAddressDelay, tffiListenDelay, tffiListenDelay+tffiListenJitter)
	sb.WriteString("| configuration | wake-ups | released on probe / ready | first byte - listening (TFFI) | first byte - request sent | listening - request sent |\n")
	sb.WriteString("| --- | ---: | --- | --- | --- | --- |\n")
	for _, r := range results {
		fmt.Fprintf(&sb, "| %s | %d | %d / %d | %s | %s | %s |\n", r.cfg.name(), len(r.wakes),
			r.releasedOn(tffi.ModeProbe), r.releasedOn(tffi.ModeReady), stat(r.tffi()), stat(r.hold()), stat(r.start()))
	}
	sb.WriteString("\nThe router's wake-up phases (its debug log line per wake-up), ms from the first held request, p50 / p99:\n\n| phase |")
	for _, r := range results {
		sb.WriteString(" " + r.cfg.name() + " |")
	}
	sb.WriteString("\n| --- |" + strings.Repeat(" --- |", len(results)) + "\n")
	for _, p := range tffi.Phases {
		sb.WriteString("| " + p + " |")
		for _, r := range results {
			d := r.phase(p)
			if len(d) == 0 {
				sb.WriteString(" - |")
				continue
			}
			fmt.Fprintf(&sb, " %.1f / %.1f |", ms(tffi.Quantile(d, 0.5)), ms(tffi.Quantile(d, 0.99)))
		}
		sb.WriteString("\n")
	}
	for _, r := range results {
		if r.cfg.fast && len(r.wakes) > 0 {
			p99 := tffi.Quantile(r.tffi(), 0.99)
			verdict := "met"
			if p99 > 20*time.Millisecond {
				verdict = "NOT met"
			}
			fmt.Fprintf(&sb, "\n%s: TFFI p99 %.1f ms, target <= 20 ms %s", r.cfg.name(), ms(p99), verdict)
		}
	}
	return sb.String()
}
