package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// sample is what the proxy holds at one moment, summed over its processes
// (nginx: master and workers).
type sample struct {
	RSSKiB     int64 `json:"rss_kib"`    // VmRSS: what the brief asks for; counts pages shared between nginx's processes once per process
	PSSKiB     int64 `json:"pss_kib"`    // Pss: shared pages split between sharers, so nginx's sum is not inflated
	FDs        int   `json:"fds"`        // entries in /proc/PID/fd
	Goroutines *int  `json:"goroutines"` // go_goroutines from -metrics; null when not asked for or not answered
}

func (s sample) String() string {
	g := "-"
	if s.Goroutines != nil {
		g = strconv.Itoa(*s.Goroutines)
	}
	return fmt.Sprintf("RSS %d KiB, PSS %d KiB, %d fds, goroutines %s", s.RSSKiB, s.PSSKiB, s.FDs, g)
}

// measure samples every PID, and the goroutine count when metricsURL is set.
// A PID that cannot be read makes the sample an error: a proxy that died
// must not look like a cheap one.
func measure(pids []int, metricsURL string) (sample, error) {
	var s sample
	for _, pid := range pids {
		rss, err := statusKiB(pid, "VmRSS")
		if err != nil {
			return s, err
		}
		s.RSSKiB += rss
		pss, err := pssKiB(pid)
		if err != nil {
			return s, err
		}
		s.PSSKiB += pss
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			return s, err
		}
		s.FDs += len(fds)
	}
	if metricsURL != "" {
		if n, err := goroutines(metricsURL); err == nil {
			s.Goroutines = &n
		} else {
			warnf("goroutines: %v", err)
		}
	}
	return s, nil
}

// statusKiB reads a "VmXxx:   1234 kB" field of /proc/PID/status.
func statusKiB(pid int, field string) (int64, error) {
	return kibField(fmt.Sprintf("/proc/%d/status", pid), field)
}

// pssKiB reads Pss from /proc/PID/smaps_rollup (Linux 4.14+).
func pssKiB(pid int) (int64, error) {
	return kibField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss")
}

func kibField(path, field string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			fs := strings.Fields(rest)
			if len(fs) == 0 {
				break
			}
			return strconv.ParseInt(fs[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in %s", field, path)
}

// cpuTime is the CPU a set of processes used so far, two ways.
type cpuTime struct {
	ticks int64 // utime+stime from /proc/PID/stat, in USER_HZ ticks
	ns    int64 // on-CPU time from /proc/PID/task/*/schedstat, in ns; -1 when unavailable
}

// userHZ is Linux's USER_HZ, the unit of /proc/PID/stat times. It is 100 on
// every architecture Go supports on Linux; reading it properly needs
// sysconf, i.e. cgo.
const userHZ = 100

// readCPU sums both counters over pids. The ticks are what the brief asks
// for but are 10 ms grains: over a 5 s window one tick is 0.2% of a core,
// coarser than an idle proxy's cost. schedstat counts nanoseconds, per
// thread, so it is summed over each process's threads (a thread that exits
// during the window takes its share with it; idle proxies do not churn
// threads).
func readCPU(pids []int) (cpuTime, error) {
	var c cpuTime
	for _, pid := range pids {
		t, err := statTicks(pid)
		if err != nil {
			return c, err
		}
		c.ticks += t
		if c.ns >= 0 {
			if ns, err := schedNanos(pid); err == nil {
				c.ns += ns
			} else {
				c.ns = -1
			}
		}
	}
	return c, nil
}

func statTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// count fields from the last ')'. utime and stime are fields 14 and 15,
	// so the 12th and 13th after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fs))
	}
	u, err1 := strconv.ParseInt(fs[11], 10, 64)
	s, err2 := strconv.ParseInt(fs[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return u + s, nil
}

func schedNanos(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no schedstat for %d", pid)
	}
	var sum int64
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited between Glob and now
		}
		fs := strings.Fields(string(b))
		if len(fs) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return 0, err
		}
		sum += ns
	}
	return sum, nil
}

// adminClient talks to the router's admin listener. Its timeout matters: a
// proxy that ran out of descriptors cannot accept the request, and the
// benchmark must go on without the figure rather than hang.
var adminClient = &http.Client{
	Timeout: 5 * time.Second,
	// One connection per scrape, closed at once: an idle keep-alive
	// connection would be one of the descriptors being counted.
	Transport: &http.Transport{DisableKeepAlives: true},
}

// goroutines reads go_goroutines from a Prometheus text exposition.
func goroutines(metricsURL string) (int, error) {
	resp, err := adminClient.Get(metricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", metricsURL, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("%s: no go_goroutines", metricsURL)
}

// goLive reads what the Go runtime holds live right after a GC: heap
// spans in use plus goroutine stacks, from go_memstats_* in /metrics.
func goLive(metricsURL string) (int64, error) {
	resp, err := adminClient.Get(metricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var sum float64
	found := 0
	for sc.Scan() {
		for _, name := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_stack_inuse_bytes "} {
			if rest, ok := strings.CutPrefix(sc.Text(), name); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				if err != nil {
					return 0, err
				}
				sum += f
				found++
			}
		}
	}
	if found != 2 {
		return 0, fmt.Errorf("%s: no go_memstats_heap_inuse_bytes or go_memstats_stack_inuse_bytes", metricsURL)
	}
	return int64(sum), nil
}

// forceGC asks the proxy to collect (the router: /debug/pprof/heap?gc=1
// runs runtime.GC before writing the profile) and discards the answer.
func forceGC(ctx context.Context, gcURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, gcURL, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", gcURL, resp.Status)
	}
	return nil
}
