package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// runConfig is one measured run: a control plane, how its clients
// subscribe, and the sizes.
type runConfig struct {
	Label     string  `json:"label"`
	Impl      string  `json:"impl"`
	Mode      string  `json:"mode"`
	Sandboxes int     `json:"sandboxes"`
	Clients   int     `json:"clients"`
	Names     int     `json:"names"`   // per client, per block
	Overlap   int     `json:"overlap"` // blocks each client holds (1: disjoint)
	Rate      float64 `json:"rate"`    // flips per second
	Seconds   float64 `json:"seconds"` // of the flip phase
	Cold      int     `json:"cold"`    // names of the cold-start client
	// InitBudget bounds the initial sync and each cold start; Drain, the
	// wait for ACKs after the last flip.
	InitBudget time.Duration `json:"init_budget_ns"`
	Drain      time.Duration `json:"drain_ns"`
	Seed       uint64        `json:"seed"`
}

func (c runConfig) check() error {
	switch {
	case c.Clients <= 0 || c.Names <= 0 || c.Sandboxes <= 0:
		return errors.New("sandboxes, clients and names must be positive")
	case c.Clients*c.Names > c.Sandboxes:
		return fmt.Errorf("%d clients x %d names is more than %d sandboxes", c.Clients, c.Names, c.Sandboxes)
	case c.Overlap < 1 || c.Overlap > c.Clients:
		return fmt.Errorf("overlap %d: want 1 to %d", c.Overlap, c.Clients)
	case c.Cold > c.Sandboxes:
		return fmt.Errorf("cold start of %d names: more than %d sandboxes", c.Cold, c.Sandboxes)
	case c.Rate*c.Seconds > float64(c.Sandboxes):
		return errors.New("more flips than sandboxes: every sandbox flips at most once per run")
	}
	return nil
}

// Client c holds blocks c, c+1, ... c+Overlap-1 (mod Clients) of Names
// sandboxes each: with Overlap 1 the holdings are disjoint.

func (c runConfig) namesOf(client int) []string {
	out := make([]string, 0, c.Names*c.Overlap)
	for j := range c.Overlap {
		b := (client + j) % c.Clients
		for i := b * c.Names; i < (b+1)*c.Names; i++ {
			out = append(out, vhdsName(i))
		}
	}
	return out
}

func (c runConfig) holds(client, i int) bool {
	b := i / c.Names
	return b < c.Clients && (b-client+c.Clients)%c.Clients < c.Overlap
}

func (c runConfig) ownersOf(i int) []int {
	b := i / c.Names
	if b >= c.Clients {
		return nil
	}
	out := make([]int, c.Overlap)
	for j := range out {
		out[j] = (b - j + c.Clients) % c.Clients
	}
	return out
}

// runMain is `bench-xds run`: it starts the control plane as a child
// process, measures it and prints the result as JSON.
func runMain(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var c runConfig
	fs.StringVar(&c.Label, "label", "", "name of the run in the report (default impl/mode)")
	fs.StringVar(&c.Impl, "impl", implOurs, "control plane: ours, linear or snapshot")
	fs.StringVar(&c.Mode, "mode", modeVHDS, "how clients subscribe: vhds, named or wildcard")
	fs.IntVar(&c.Sandboxes, "sandboxes", 100_000, "sandboxes in the resolver")
	fs.IntVar(&c.Clients, "clients", 50, "delta-xDS clients")
	fs.IntVar(&c.Names, "names", 2000, "virtual hosts per client (per block)")
	fs.IntVar(&c.Overlap, "overlap", 1, "blocks of names per client; 1 splits the names without overlap")
	fs.Float64Var(&c.Rate, "rate", 100, "flips per second")
	fs.Float64Var(&c.Seconds, "seconds", 30, "length of the flip phase")
	fs.IntVar(&c.Cold, "cold", 10_000, "names of the cold-start client (0: none)")
	fs.DurationVar(&c.InitBudget, "init-budget", 3*time.Minute, "bound on the initial sync and on each cold start")
	fs.DurationVar(&c.Drain, "drain", 15*time.Second, "wait for ACKs after the last flip")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the flips' order")
	out := fs.String("out", "", "write the JSON result here (default stdout)")
	dump := fs.String("dump", "", "write every flip's latency here (sandbox, ms since the first flip, ms)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Label == "" {
		c.Label = c.Impl + "/" + c.Mode
	}
	if err := c.check(); err != nil {
		return err
	}
	if *dump != "" {
		f, err := os.Create(*dump)
		if err != nil {
			return err
		}
		defer f.Close()
		dumpLatencies = f
	}
	ctx, stop := signalContext()
	defer stop()
	p, err := spawnPlane(c)
	if err != nil {
		return err
	}
	logf("%s: control plane pid %d, xDS on %s, control on http://%s", c.Label, p.PID, p.XDS, p.Control)
	res, err := measure(ctx, p, c, logf)
	if serr := p.stop(); serr != nil {
		logf("%s: stopping the control plane: %v", c.Label, serr)
	}
	if err != nil {
		return err
	}
	w := io.Writer(os.Stdout)
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "    "+format+"\n", args...)
}

// planeProc is a control plane to measure: where it serves and how to reach
// its control endpoint.
type planeProc struct {
	XDS         string  `json:"xds"`
	Control     string  `json:"control"`
	PID         int     `json:"pid"`
	FillSeconds float64 `json:"fill_seconds"`
	cmd         *exec.Cmd
}

// spawnPlane starts `bench-xds serve` and reads its addresses.
func spawnPlane(c runConfig) (*planeProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "serve", "-impl", c.Impl, "-sandboxes", strconv.Itoa(c.Sandboxes),
		"-seed", strconv.FormatUint(c.Seed, 10))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &planeProc{cmd: cmd}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, p)
	}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("control plane did not start: %w", err)
	}
	go io.Copy(io.Discard, stdout)
	return p, nil
}

// stop ends the child: TERM, 10 s of grace, KILL.
func (p *planeProc) stop() error {
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		return errors.New("killed after 10 s")
	}
}

func (p *planeProc) stats(ctx context.Context, gc bool) (stats, error) {
	var s stats
	u := "http://" + p.Control + "/stats"
	if gc {
		u += "?gc=1"
	}
	err := getJSON(ctx, http.MethodGet, u, &s)
	return s, err
}

func (p *planeProc) flip(ctx context.Context, rate, seconds float64) (flipReply, error) {
	var r flipReply
	q := url.Values{"rate": {strconv.FormatFloat(rate, 'f', -1, 64)}, "seconds": {strconv.FormatFloat(seconds, 'f', -1, 64)}}
	err := getJSON(ctx, http.MethodPost, "http://"+p.Control+"/flip?"+q.Encode(), &r)
	return r, err
}

func getJSON(ctx context.Context, method, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, body)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// measure runs the phases against a running plane: a cold start on the
// empty plane, the initial sync of every client, the flip phase, a cold
// start of names others already hold.
func measure(ctx context.Context, p *planeProc, c runConfig, logf func(string, ...any)) (*result, error) {
	res := &result{Config: c, FillSeconds: p.FillSeconds}
	base, err := p.stats(ctx, true)
	if err != nil {
		return nil, err
	}
	res.RSSBeforeKiB = base.RSSKiB

	if c.Cold > 0 {
		if c.Mode == modeWildcard {
			logf("%s: cold start of a wildcard client, nothing subscribed yet", c.Label)
		} else {
			logf("%s: cold start, %d names, nothing subscribed yet", c.Label, c.Cold)
		}
		res.ColdEmpty, err = coldStart(ctx, p, c, "cold-empty")
		if err != nil {
			return nil, err
		}
	}

	// Initial sync: every client at once.
	logf("%s: initial sync of %d clients x %d names", c.Label, c.Clients, c.Names*c.Overlap)
	recording := &atomic.Bool{}
	clients := make([]*client, c.Clients)
	defer func() {
		for _, cl := range clients {
			if cl != nil {
				cl.close()
			}
		}
	}()
	s0, err := p.stats(ctx, false)
	if err != nil {
		return nil, err
	}
	start := mono()
	var g errgroup.Group
	for i := range clients {
		o := clientOptions{addr: p.XDS, nodeID: "envoy-" + strconv.Itoa(i), mode: c.Mode, recording: recording,
			owns: func(s int) bool { return c.holds(i, s) }}
		if c.Mode == modeWildcard {
			o.want = c.Sandboxes
		} else {
			o.names = c.namesOf(i)
			o.want = len(o.names)
		}
		g.Go(func() error {
			cl, err := dial(ctx, o)
			clients[i] = cl
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(c.InitBudget)
	for _, cl := range clients {
		if err := waitSynced(ctx, cl, deadline); err != nil {
			return nil, err
		}
	}
	res.Initial.Clients = c.Clients
	for _, cl := range clients {
		if cl.syncedAt != 0 {
			res.Initial.Synced++
			res.Initial.Seconds = max(res.Initial.Seconds, float64(cl.syncedAt-start)/1e9)
		}
		res.Initial.Bytes += cl.bytes.Load()
	}
	s1, err := p.stats(ctx, false)
	if err != nil {
		return nil, err
	}
	res.Initial.CPUSeconds = float64(s1.CPUNanos-s0.CPUNanos) / 1e9
	res.RSSAfterSyncKiB = s1.RSSKiB
	if live, err := p.stats(ctx, true); err == nil {
		res.HeapBeforeBytes, res.HeapAfterSyncBytes = base.HeapBytes, live.HeapBytes
	} else {
		return nil, err
	}
	if res.Initial.Synced < c.Clients {
		res.Initial.Seconds = c.InitBudget.Seconds()
		res.Cuts = append(res.Cuts, fmt.Sprintf("initial sync: %d of %d clients had their virtual hosts within the %v budget; flip phase skipped",
			res.Initial.Synced, c.Clients, c.InitBudget))
		return res, finish(ctx, p, res)
	}
	logf("%s: initial sync %.2f s, %.1f MiB", c.Label, res.Initial.Seconds, float64(res.Initial.Bytes)/(1<<20))

	// The flip phase.
	logf("%s: %g flips/s for %g s", c.Label, c.Rate, c.Seconds)
	recording.Store(true)
	s2, err := p.stats(ctx, false)
	if err != nil {
		return nil, err
	}
	fr, err := p.flip(ctx, c.Rate, c.Seconds)
	if err != nil {
		return nil, err
	}
	drained := waitDelivered(ctx, c, clients, fr.Flips, time.Now().Add(c.Drain))
	s3, err := p.stats(ctx, false)
	if err != nil {
		return nil, err
	}
	recording.Store(false)
	for _, cl := range clients {
		if err := cl.failed(); err != nil {
			return nil, fmt.Errorf("client %s: %w", cl.opts.nodeID, err)
		}
		if cl.recordedErr != nil {
			return nil, fmt.Errorf("client %s received a virtual host it cannot read: %w", cl.opts.nodeID, cl.recordedErr)
		}
	}
	res.Flips = flipFigures(c, clients, fr, float64(s3.CPUNanos-s2.CPUNanos)/1e9, float64(mono()-fr.firstT())/1e9)
	if !drained {
		res.Cuts = append(res.Cuts, fmt.Sprintf("%d of %d subscriber deliveries not acknowledged within %v of the last flip (counted as slower than that)",
			res.Flips.Censored, res.Flips.SubscriberFlips, c.Drain))
	}
	logf("%s: %d flips, latency p50 %.1f ms p99 %s", c.Label, res.Flips.Count, res.Flips.P50Ms, msOrCensored(res.Flips.P99Ms))

	if c.Cold > 0 && c.Mode != modeWildcard {
		logf("%s: cold start, %d names others hold", c.Label, c.Cold)
		res.ColdWarm, err = coldStart(ctx, p, c, "cold-warm")
		if err != nil {
			return nil, err
		}
	}
	return res, finish(ctx, p, res)
}

// finish reads the plane's final memory figures.
func finish(ctx context.Context, p *planeProc, res *result) error {
	s, err := p.stats(ctx, false)
	if err != nil {
		return err
	}
	res.RSSEndKiB, res.HWMKiB = s.RSSKiB, s.HWMKiB
	return nil
}

func waitSynced(ctx context.Context, cl *client, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-cl.synced:
		return nil
	case <-cl.done:
		return fmt.Errorf("client %s: %w", cl.opts.nodeID, cl.failed())
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// coldStart connects one more client that asks for the first c.Cold names
// (everything, in wildcard mode) and times it until it has them all.
func coldStart(ctx context.Context, p *planeProc, c runConfig, id string) (*coldFigures, error) {
	names := make([]string, c.Cold)
	for i := range names {
		names[i] = vhdsName(i)
	}
	o := clientOptions{addr: p.XDS, nodeID: id, mode: c.Mode, names: names, want: len(names),
		owns: func(i int) bool { return i < len(names) }}
	if c.Mode == modeWildcard {
		o.names, o.want = nil, c.Sandboxes
	}
	cl, err := dial(ctx, o)
	if err != nil {
		return nil, err
	}
	defer cl.close()
	if err := waitSynced(ctx, cl, time.Now().Add(c.InitBudget)); err != nil {
		return nil, err
	}
	f := &coldFigures{Names: o.want, Bytes: cl.bytes.Load(), Responses: cl.responses.Load(), Complete: cl.syncedAt != 0}
	if f.Complete {
		f.Seconds = float64(cl.syncedAt-cl.started) / 1e9
	} else {
		f.Seconds = c.InitBudget.Seconds()
	}
	return f, nil
}

// waitDelivered waits until every subscriber of every flip acknowledged
// it, or deadline; it reports whether all were.
func waitDelivered(ctx context.Context, c runConfig, clients []*client, flips []flipRecord, deadline time.Time) bool {
	pending := slices.Clone(flips)
	for {
		pending = slices.DeleteFunc(pending, func(f flipRecord) bool {
			for _, o := range c.ownersOf(f.I) {
				if _, ok := clients[o].delivered(f.I, f.Sig); !ok {
					return false
				}
			}
			return true
		})
		if len(pending) == 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r flipReply) firstT() int64 {
	if len(r.Flips) == 0 {
		return mono()
	}
	return r.Flips[0].T
}

// flipFigures matches every flip to its subscribers' ACKs and sums the bytes.
func flipFigures(c runConfig, clients []*client, fr flipReply, cpu, window float64) flipStats {
	st := flipStats{Count: len(fr.Flips), Seconds: fr.Seconds, CPUSeconds: cpu, WindowSeconds: window}
	var lat []float64
	for _, f := range fr.Flips {
		owners := c.ownersOf(f.I)
		if len(owners) == 0 {
			continue
		}
		st.Subscribed++
		st.SubscriberFlips += len(owners)
		worst, missing := 0.0, 0
		for _, o := range owners {
			t, ok := clients[o].delivered(f.I, f.Sig)
			if !ok {
				missing++
				continue
			}
			worst = max(worst, float64(max(t-f.T, 0))/1e6)
		}
		if missing > 0 {
			st.Censored += missing
			worst = math.Inf(1)
		}
		lat = append(lat, worst)
		if dumpLatencies != nil {
			fmt.Fprintf(dumpLatencies, "%d %.3f %.3f\n", f.I, float64(f.T-fr.firstT())/1e6, worst)
		}
	}
	slices.Sort(lat)
	st.P50Ms, st.P90Ms, st.P99Ms, st.MaxMs = quantile(lat, 0.5), quantile(lat, 0.9), quantile(lat, 0.99), quantile(lat, 1)
	var owned, other, otherCount int64
	for _, cl := range clients {
		cl.mu.Lock()
		owned += cl.ownedBytes
		other += cl.otherBytes
		otherCount += cl.otherCount
		cl.mu.Unlock()
	}
	st.SubscribedBytes, st.OtherBytes, st.OtherVirtualHosts = owned, other, otherCount
	if st.SubscriberFlips > 0 {
		st.BytesPerSubscriberFlip = float64(owned) / float64(st.SubscriberFlips)
	}
	if st.Count > 0 {
		st.OtherBytesPerFlip = float64(other) / float64(st.Count)
		st.CPUMsPerFlip = cpu * 1e3 / float64(st.Count)
	}
	return st
}

// dumpLatencies, when set, receives one line per subscribed flip: the
// sandbox, ms since the first flip, latency in ms.
var dumpLatencies io.Writer

// quantile of sorted values; an infinite one (never delivered) is
// reported as -1.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	v := sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
	if math.IsInf(v, 1) {
		return -1
	}
	return v
}

func msOrCensored(v float64) string {
	if v < 0 {
		return "not delivered"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
}
