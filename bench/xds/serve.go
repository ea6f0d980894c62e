package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// serveMain is the control-plane process: it fills the synthetic resolver,
// serves one plane over xDS and answers the driver's control requests. It
// prints one JSON line (its addresses) on stdout once it serves.
func serveMain(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	impl := fs.String("impl", implOurs, "control plane: ours, linear or snapshot")
	n := fs.Int("sandboxes", 100_000, "sandboxes in the synthetic resolver")
	seed := fs.Uint64("seed", 1, "seed of the flips' order")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	p, errc, err := listenPlane(ctx, *impl, *n, *seed)
	if err != nil {
		return err
	}
	line, err := json.Marshal(p)
	if err != nil {
		return err
	}
	fmt.Println(string(line))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		select {
		case err := <-errc:
			return err
		case <-time.After(5 * time.Second):
			return errors.New("the plane did not stop within 5 s")
		}
	}
}

// listenPlane fills the synthetic resolver and starts impl's plane and the
// control endpoint, each on a loopback port of its own. They run until ctx
// ends; the plane's error arrives on errc.
func listenPlane(ctx context.Context, impl string, n int, seed uint64) (*planeProc, <-chan error, error) {
	start := time.Now()
	f := newFleet(n)
	fill := time.Since(start)
	runtime.GC()
	xlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	clis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		xlis.Close()
		return nil, nil, err
	}
	ctl := &control{fleet: f, order: rand.New(rand.NewPCG(seed, 0x5eed)).Perm(n)}
	hs := &http.Server{Handler: ctl.handler()}
	go hs.Serve(clis)
	errc := make(chan error, 1)
	go func() {
		err := servePlane(ctx, impl, f, xlis)
		hs.Close()
		errc <- err
	}()
	p := &planeProc{XDS: xlis.Addr().String(), Control: clis.Addr().String(), PID: os.Getpid(), FillSeconds: fill.Seconds()}
	return p, errc, nil
}

// control is the control-plane process's side of the driver's requests.
type control struct {
	fleet *fleet

	mu     sync.Mutex // one flip phase at a time
	order  []int      // the flips' order: a random permutation of the sandboxes
	cursor int
}

// flipRecord is one flip: sandbox I now routes to Sig, available to the
// resolver's feeds at T (CLOCK_MONOTONIC ns).
type flipRecord struct {
	I   int    `json:"i"`
	Sig string `json:"sig"`
	T   int64  `json:"t"`
}

type flipReply struct {
	Flips   []flipRecord `json:"flips"`
	Seconds float64      `json:"seconds"` // from the first flip to the last
}

// stats is what the control-plane process holds and has spent.
type stats struct {
	PID        int   `json:"pid"`
	CPUNanos   int64 `json:"cpu_ns"` // user + system, the whole process
	RSSKiB     int64 `json:"rss_kib"`
	HWMKiB     int64 `json:"hwm_kib"` // peak resident
	HeapBytes  int64 `json:"heap_bytes"`
	Goroutines int   `json:"goroutines"`
}

func (c *control) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		s, err := selfStats(r.URL.Query().Get("gc") == "1")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, s)
	})
	// POST /flip?rate=R&seconds=S flips R sandboxes a second for S
	// seconds, each sandbox at most once until all have been flipped.
	mux.HandleFunc("POST /flip", func(w http.ResponseWriter, r *http.Request) {
		rate, err1 := strconv.ParseFloat(r.URL.Query().Get("rate"), 64)
		secs, err2 := strconv.ParseFloat(r.URL.Query().Get("seconds"), 64)
		if err1 != nil || err2 != nil || rate <= 0 || secs < 0 {
			http.Error(w, "rate and seconds are required", http.StatusBadRequest)
			return
		}
		writeJSON(w, c.flips(rate, secs))
	})
	// A CPU or heap profile of the control plane, for a look at where a
	// phase spends its time.
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.Handle("GET /debug/pprof/heap", pprof.Handler("heap"))
	return mux
}

// flips runs one flip phase at a steady rate.
func (c *control) flips(rate, seconds float64) flipReply {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := int(rate*seconds + 0.5)
	interval := time.Duration(float64(time.Second) / rate)
	out := flipReply{Flips: make([]flipRecord, 0, total)}
	start := time.Now()
	for n := range total {
		if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
			time.Sleep(d)
		}
		i := c.order[c.cursor]
		c.cursor = (c.cursor + 1) % len(c.order)
		sig, t := c.fleet.flip(i)
		out.Flips = append(out.Flips, flipRecord{I: i, Sig: sig, T: t})
	}
	if total > 0 {
		out.Seconds = float64(out.Flips[total-1].T-out.Flips[0].T) / 1e9
	}
	return out
}

func selfStats(gc bool) (stats, error) {
	if gc {
		runtime.GC()
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return stats{}, err
	}
	s := stats{
		PID:        os.Getpid(),
		CPUNanos:   ru.Utime.Nano() + ru.Stime.Nano(),
		Goroutines: runtime.NumGoroutine(),
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.HeapBytes = int64(ms.HeapAlloc)
	var err error
	s.RSSKiB, s.HWMKiB, err = residentKiB("/proc/self/status")
	return s, err
}

// residentKiB reads VmRSS and VmHWM from a /proc/PID/status file.
func residentKiB(path string) (rss, hwm int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %s: %w", path, name, err)
		}
		if name == "VmRSS" {
			rss = kib
		} else {
			hwm = kib
		}
	}
	return rss, hwm, sc.Err()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
