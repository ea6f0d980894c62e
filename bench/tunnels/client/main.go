// Command client measures what long-lived idle connections cost a proxy:
// it opens N WebSockets, SSE streams or idle h2c (HTTP/2 with prior
// knowledge) connections through it, and reads the proxy's
// memory, descriptors, goroutines and CPU from /proc (and the router's
// /metrics) before, while they idle, and after they close. It is a process
// of its own so that its own connections do not count against the proxy.
// It is driven by bench/tunnels.sh, against bench/tunnels/origin.
//
// Sequence: baseline (and idle CPU with nothing open); open N (a bounded
// pool of openers, failures counted, not fatal); settle, measure, watch CPU
// over -idle; WebSocket only: one echo per connection; h2c only: check that
// the proxy still holds every connection; close all, wait for
// the proxy's descriptors to stop falling, force a GC (-gc), measure what
// is left.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type config struct {
	ep          endpoint
	n           int
	sources     []net.IP
	pids        []int
	metricsURL  string
	gcURL       string
	idle        time.Duration
	settle      time.Duration
	concurrency int
	openLimit   time.Duration
	closeWait   time.Duration
	jsonOut     bool
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tunnels-client: %v\n", err)
		os.Exit(2)
	}
	res := run(cfg)
	if cfg.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.Encode(res)
	} else {
		printText(res)
	}
	if res.Error != "" {
		os.Exit(1)
	}
}

func parseFlags() (*config, error) {
	var headers listFlag
	target := flag.String("target", "", "the proxy's base URL, e.g. http://127.0.0.1:8080")
	flag.Var(&headers, "header", "extra request header 'K: V' (repeatable)")
	kind := flag.String("kind", "ws", "ws (WebSocket), sse (server-sent events) or h2c (HTTP/2 with prior knowledge: one GET /healthz, then idle)")
	n := flag.Int("n", 1000, "connections to open")
	sources := flag.String("sources", "", "comma-separated local addresses to dial from, round-robin (many loopback addresses avoid ephemeral-port exhaustion)")
	pids := flag.String("pid", "", "comma-separated PIDs of the proxy's processes (nginx: master and workers)")
	metricsURL := flag.String("metrics", "", "Prometheus /metrics URL to read go_goroutines from (the router's admin listener)")
	gcURL := flag.String("gc", "", "URL whose GET forces a GC before the after-close measurement (the router: /debug/pprof/heap?gc=1)")
	idle := flag.Duration("idle", 5*time.Second, "window over which idle CPU is measured")
	settle := flag.Duration("settle", time.Second, "pause between opening the last connection and measuring")
	conc := flag.Int("concurrency", 64, "connections opened (and echoed) at once")
	hsTimeout := flag.Duration("handshake-timeout", 5*time.Second, "time one connection has to dial and finish its handshake")
	openLimit := flag.Duration("open-deadline", 60*time.Second, "start no new connection after this long; the rest count as skipped (a proxy out of descriptors may time every handshake out)")
	closeWait := flag.Duration("close-wait", 10*time.Second, "how long to wait for the proxy's descriptors to stop falling after closing")
	jsonOut := flag.Bool("json", false, "print one JSON object instead of text")
	flag.Parse()

	c := &config{
		n: *n, metricsURL: *metricsURL, gcURL: *gcURL, idle: *idle, settle: *settle,
		concurrency: *conc, openLimit: *openLimit, closeWait: *closeWait, jsonOut: *jsonOut,
	}
	if *kind != "ws" && *kind != "sse" && *kind != "h2c" {
		return nil, fmt.Errorf("-kind %q: want ws, sse or h2c", *kind)
	}
	if *n <= 0 || *conc <= 0 {
		return nil, fmt.Errorf("-n and -concurrency must be positive")
	}
	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("-target %q: want http://host:port", *target)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	for _, h := range headers {
		if k, _, ok := strings.Cut(h, ":"); !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("-header %q: want 'K: V'", h)
		}
	}
	path := "/" + *kind
	if *kind == "h2c" {
		path = "/healthz"
	}
	c.ep = endpoint{
		addr: addr, host: u.Host, path: strings.TrimSuffix(u.Path, "/") + path,
		kind: *kind, headers: headers, timeout: *hsTimeout,
	}
	for s := range strings.SplitSeq(*sources, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("-sources: %q is not an IP address", s)
		}
		c.sources = append(c.sources, ip)
	}
	for s := range strings.SplitSeq(*pids, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		pid, err := strconv.Atoi(s)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("-pid: %q is not a PID", s)
		}
		c.pids = append(c.pids, pid)
	}
	if len(c.pids) == 0 {
		return nil, fmt.Errorf("-pid is required")
	}
	return c, nil
}

// result is everything one run found. Per-connection and delta figures are
// null when nothing opened or the input was not measured.
type result struct {
	Kind        string         `json:"kind"`
	N           int            `json:"n"`
	Opened      int            `json:"opened"`
	Failed      int            `json:"failed"`
	Skipped     int            `json:"skipped"` // not attempted: -open-deadline passed
	Errors      map[string]int `json:"errors,omitempty"`
	OpenSeconds float64        `json:"open_seconds"`
	HSp50ms     float64        `json:"handshake_p50_ms"`
	HSp99ms     float64        `json:"handshake_p99_ms"`
	HSmaxms     float64        `json:"handshake_max_ms"`

	Baseline   sample `json:"baseline"`
	Open       sample `json:"open"`
	AfterClose sample `json:"after_close"`

	PerConn struct {
		RSSKiB     *float64 `json:"rss_kib"`
		PSSKiB     *float64 `json:"pss_kib"`
		FDs        *float64 `json:"fds"`
		Goroutines *float64 `json:"goroutines"`
		// LiveKiB: the Go runtime's heap in use and stacks right after a
		// forced GC, with N open less before: what each connection holds,
		// without the garbage the GC lets accumulate between cycles.
		LiveKiB *float64 `json:"live_kib"`
	} `json:"per_conn"`

	IdleSeconds    float64  `json:"idle_seconds"`
	IdleCPUBasePct float64  `json:"idle_cpu_baseline_percent"` // the same window before opening anything
	IdleCPUPercent float64  `json:"idle_cpu_percent"`          // of one core, from schedstat when readable
	IdleCPUSource  string   `json:"idle_cpu_source"`
	IdleCPUTicks   int64    `json:"idle_cpu_ticks"`         // utime+stime over the window, 10 ms each
	IdleCPUusConnS *float64 `json:"idle_cpu_us_per_conn_s"` // CPU-µs per connection per second

	EchoesOK    int `json:"echoes_ok"`
	EchoesTried int `json:"echoes_tried"`

	// h2c: connections the proxy still held just before the close (no
	// GOAWAY, FIN or RST from it while they idled), of those opened.
	OpenAtClose *int `json:"open_at_close"`

	CloseSeconds float64 `json:"close_settle_seconds"` // from the first close to descriptors settling
	Left         struct {
		FDs        int   `json:"fds"`
		RSSKiB     int64 `json:"rss_kib"`
		PSSKiB     int64 `json:"pss_kib"`
		Goroutines *int  `json:"goroutines"`
	} `json:"left_after_close"`

	NofileSoft uint64 `json:"client_nofile_soft"`
	NofileHard uint64 `json:"client_nofile_hard"`
	Error      string `json:"error,omitempty"`
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "tunnels-client: "+format+"\n", a...)
}

func warnf(format string, a ...any) { logf("warning: "+format, a...) }

// run does the whole sequence. A proxy that cannot be measured any more
// (it died) ends it early with res.Error set; everything else, failed
// connections included, is a figure, not an error.
func run(c *config) *result {
	res := &result{Kind: c.ep.kind, N: c.n}
	checkNofile(res, c.n)
	ctx := context.Background()

	// The first /metrics scrape makes the router build what it serves
	// from; let that happen before the baseline, not inside the figure.
	if c.metricsURL != "" {
		goroutines(c.metricsURL)
	}
	var err error
	if res.Baseline, err = measure(c.pids, c.metricsURL); err != nil {
		res.Error = "baseline: " + err.Error()
		return res
	}
	// The same idle window with no tunnel open: what the proxy spends
	// anyway, so that the figure with N open can be read against it.
	if res.IdleCPUBasePct, _, err = idleCPU(c.pids, c.idle); err != nil {
		res.Error = "baseline idle CPU: " + err.Error()
		return res
	}
	live0, liveOK := int64(0), false
	if c.gcURL != "" && c.metricsURL != "" {
		if err := forceGC(ctx, c.gcURL); err == nil {
			live0, err = goLive(c.metricsURL)
			liveOK = err == nil
		}
	}
	logf("baseline: %v; opening %d %s connections", res.Baseline, c.n, c.ep.kind)

	tunnels := openAll(ctx, c, res)
	logf("opened %d, failed %d, skipped %d in %.2fs", res.Opened, res.Failed, res.Skipped, res.OpenSeconds)
	defer func() { // whatever happens, do not leave the proxy holding them
		for _, t := range tunnels {
			t.conn.Close()
		}
	}()

	time.Sleep(c.settle)
	if res.Open, err = measure(c.pids, c.metricsURL); err != nil {
		res.Error = "after open: " + err.Error()
		return res
	}
	perConn(res)
	var idle cpuWindow
	if res.IdleCPUPercent, idle, err = idleCPU(c.pids, c.idle); err != nil {
		res.Error = "idle CPU: " + err.Error()
		return res
	}
	res.IdleSeconds, res.IdleCPUTicks, res.IdleCPUSource = idle.window.Seconds(), idle.ticks, idle.source
	if res.Opened > 0 {
		v := idle.ns / 1e3 / float64(res.Opened) / idle.window.Seconds()
		res.IdleCPUusConnS = &v
	}

	if liveOK && res.Opened > 0 {
		if err := forceGC(ctx, c.gcURL); err == nil {
			if live1, err := goLive(c.metricsURL); err == nil {
				v := float64(live1-live0) / 1024 / float64(res.Opened)
				res.PerConn.LiveKiB = &v
			}
		}
	}

	if c.ep.kind == "ws" {
		echoAll(c, res, tunnels)
		logf("echoes: %d/%d", res.EchoesOK, res.EchoesTried)
	}
	if c.ep.kind == "h2c" {
		checkOpen(res, tunnels)
		logf("still open before the close: %d/%d", *res.OpenAtClose, res.Opened)
	}

	closeStart := time.Now()
	closeBy := closeStart.Add(5 * time.Second) // all close frames, together
	for _, t := range tunnels {
		t.close(c.ep.kind, closeBy)
	}
	tunnels = nil
	waitFDsSettle(c, res.Baseline.FDs)
	res.CloseSeconds = time.Since(closeStart).Seconds()
	if c.gcURL != "" {
		if err := forceGC(ctx, c.gcURL); err != nil {
			warnf("gc: %v", err)
		}
		// The GC frees the heap; the runtime returns pages to the kernel
		// in the background. Give it a moment, no more: what is still
		// held is part of the answer.
		time.Sleep(time.Second)
	}
	if res.AfterClose, err = measure(c.pids, c.metricsURL); err != nil {
		res.Error = "after close: " + err.Error()
		return res
	}
	res.Left.FDs = res.AfterClose.FDs - res.Baseline.FDs
	res.Left.RSSKiB = res.AfterClose.RSSKiB - res.Baseline.RSSKiB
	res.Left.PSSKiB = res.AfterClose.PSSKiB - res.Baseline.PSSKiB
	if a, b := res.AfterClose.Goroutines, res.Baseline.Goroutines; a != nil && b != nil {
		d := *a - *b
		res.Left.Goroutines = &d
	}
	return res
}

// checkNofile records the client's descriptor limit. Go raises the soft
// limit to the hard one at start-up (since 1.19); this only verifies it,
// and warns when N connections cannot fit.
func checkNofile(res *result, n int) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		warnf("getrlimit: %v", err)
		return
	}
	res.NofileSoft, res.NofileHard = rl.Cur, rl.Max
	if rl.Cur < uint64(n)+64 {
		warnf("RLIMIT_NOFILE soft limit %d (hard %d) is too low for %d connections", rl.Cur, rl.Max, n)
	}
}

// openAll opens c.n tunnels with c.concurrency openers, each connection
// from the next source address in turn. It returns the ones that opened.
func openAll(ctx context.Context, c *config, res *result) []*tunnel {
	jobs := make(chan int)
	var (
		mu      sync.Mutex
		tunnels []*tunnel
		hs      []time.Duration
		errs    = map[string]int{}
		wg      sync.WaitGroup
	)
	start := time.Now()
	stopAt := start.Add(c.openLimit)
	for range min(c.concurrency, c.n) {
		wg.Go(func() {
			for i := range jobs {
				if time.Now().After(stopAt) {
					mu.Lock()
					res.Skipped++
					mu.Unlock()
					continue
				}
				var src net.IP
				if len(c.sources) > 0 {
					src = c.sources[i%len(c.sources)]
				}
				t0 := time.Now()
				t, err := c.ep.open(ctx, src)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					res.Failed++
					errs[errClass(err)]++
				} else {
					tunnels = append(tunnels, t)
					hs = append(hs, d)
				}
				mu.Unlock()
			}
		})
	}
	for i := range c.n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	res.OpenSeconds = time.Since(start).Seconds()
	res.Opened = len(tunnels)
	if len(errs) > 0 {
		res.Errors = errs
	}
	slices.Sort(hs)
	res.HSp50ms = ms(percentile(hs, 0.50))
	res.HSp99ms = ms(percentile(hs, 0.99))
	if len(hs) > 0 {
		res.HSmaxms = ms(hs[len(hs)-1])
	}
	return tunnels
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// perConn divides what opening added by the connections that opened.
func perConn(res *result) {
	if res.Opened == 0 {
		return
	}
	n := float64(res.Opened)
	per := func(after, before int64) *float64 {
		v := float64(after-before) / n
		return &v
	}
	res.PerConn.RSSKiB = per(res.Open.RSSKiB, res.Baseline.RSSKiB)
	res.PerConn.PSSKiB = per(res.Open.PSSKiB, res.Baseline.PSSKiB)
	res.PerConn.FDs = per(int64(res.Open.FDs), int64(res.Baseline.FDs))
	if a, b := res.Open.Goroutines, res.Baseline.Goroutines; a != nil && b != nil {
		res.PerConn.Goroutines = per(int64(*a), int64(*b))
	}
}

// cpuWindow is what the proxy's processes spent over one window.
type cpuWindow struct {
	window time.Duration
	ns     float64 // from schedstat when readable, else ticks
	ticks  int64
	source string
}

// idleCPU watches the proxy's CPU over d while nothing talks to it (no
// /metrics scrape in the window) and returns it as a percentage of one core.
func idleCPU(pids []int, d time.Duration) (float64, cpuWindow, error) {
	var w cpuWindow
	before, err := readCPU(pids)
	if err != nil {
		return 0, w, err
	}
	t0 := time.Now()
	time.Sleep(d)
	after, err := readCPU(pids)
	if err != nil {
		return 0, w, err
	}
	w.window = time.Since(t0)
	w.ticks = after.ticks - before.ticks
	w.ns, w.source = float64(w.ticks)*float64(time.Second/userHZ), "stat ticks"
	if before.ns >= 0 && after.ns >= 0 {
		w.ns, w.source = float64(after.ns-before.ns), "schedstat"
	}
	return 100 * w.ns / float64(w.window.Nanoseconds()), w, nil
}

// Bounds on the echo round: one echo may take echoTimeout, all of them
// together echoRoundTimeout, so that a proxy that swallows frames costs
// seconds, not N times echoTimeout.
const (
	echoTimeout      = 10 * time.Second
	echoRoundTimeout = 30 * time.Second
)

// echoAll sends one frame on every WebSocket, c.concurrency at a time, and
// counts the ones that came back intact.
func echoAll(c *config, res *result, tunnels []*tunnel) {
	stop := time.Now().Add(echoRoundTimeout)
	sem := make(chan struct{}, c.concurrency)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for i, t := range tunnels {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			deadline := time.Now().Add(echoTimeout)
			if deadline.After(stop) {
				deadline = stop // past it, the echo fails at once as a timeout
			}
			err := t.echo("echo "+strconv.Itoa(i), deadline)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				res.EchoesOK++
				return
			}
			if res.Errors == nil {
				res.Errors = map[string]int{}
			}
			res.Errors[errClass(err)]++
		})
	}
	wg.Wait()
	res.EchoesTried = len(tunnels)
}

// checkOpen counts the h2c connections the proxy has kept through the idle
// window; the others go into res.Errors by how they ended ("idle: ...").
func checkOpen(res *result, tunnels []*tunnel) {
	open := 0
	for _, t := range tunnels {
		err := t.stillOpen(time.Now().Add(time.Second))
		if err == nil {
			open++
			continue
		}
		if res.Errors == nil {
			res.Errors = map[string]int{}
		}
		res.Errors[errClass(err)]++
	}
	res.OpenAtClose = &open
}

// stableFor is how long the descriptor count must hold still to count as
// settled after the close.
const stableFor = time.Second

// waitFDsSettle polls the proxy's descriptors until they are back to the
// baseline, or have not fallen for stableFor, or c.closeWait has passed.
func waitFDsSettle(c *config, baseline int) {
	deadline := time.Now().Add(c.closeWait)
	last, lastChange := -1, time.Now()
	for time.Now().Before(deadline) {
		s, err := measure(c.pids, "")
		if err != nil {
			return
		}
		if s.FDs <= baseline {
			return
		}
		if s.FDs != last {
			last, lastChange = s.FDs, time.Now()
		} else if time.Since(lastChange) >= stableFor {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	warnf("descriptors still at %d (baseline %d) after %v", last, baseline, c.closeWait)
}

func printText(r *result) {
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatFloat(*p, 'f', 2, 64)
	}
	g := func(p *int) string {
		if p == nil {
			return "-"
		}
		return strconv.Itoa(*p)
	}
	fmt.Printf("%s: opened %d/%d (failed %d, skipped %d) in %.2fs; handshake p50 %.2f ms p99 %.2f ms\n",
		r.Kind, r.Opened, r.N, r.Failed, r.Skipped, r.OpenSeconds, r.HSp50ms, r.HSp99ms)
	for e, n := range r.Errors {
		fmt.Printf("  %6d  %s\n", n, e)
	}
	fmt.Printf("per connection: RSS %s KiB, PSS %s KiB, fds %s, goroutines %s\n",
		f(r.PerConn.RSSKiB), f(r.PerConn.PSSKiB), f(r.PerConn.FDs), f(r.PerConn.Goroutines))
	fmt.Printf("idle CPU over %.1fs: %.3f%% of a core (%s; %d ticks; %.3f%% before opening), %s µs per connection per second\n",
		r.IdleSeconds, r.IdleCPUPercent, r.IdleCPUSource, r.IdleCPUTicks, r.IdleCPUBasePct, f(r.IdleCPUusConnS))
	if r.Kind == "ws" {
		fmt.Printf("echoes ok: %d/%d\n", r.EchoesOK, r.EchoesTried)
	}
	if r.OpenAtClose != nil {
		fmt.Printf("still open before the close: %d/%d\n", *r.OpenAtClose, r.Opened)
	}
	fmt.Printf("after close (%.1fs) and GC: fds left %d, RSS left %d KiB, PSS left %d KiB, goroutines left %s\n",
		r.CloseSeconds, r.Left.FDs, r.Left.RSSKiB, r.Left.PSSKiB, g(r.Left.Goroutines))
	if r.Error != "" {
		fmt.Printf("error: %s\n", r.Error)
	}
}
