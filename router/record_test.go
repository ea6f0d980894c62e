package router

// The bookkeeping of a request runs however it ends, and the access log
// outlives its write errors.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// panickingActivator panics while holding a request: a bug below the
// request's bookkeeping.
type panickingActivator struct{}

func (panickingActivator) Activate(context.Context, resolver.Key, uint16, resolver.Result) (resolver.Result, func(), error) {
	panic("activator bug")
}

// TestPanicEndsTheBookkeeping: a panic below ServeHTTP still ends the
// sandbox's activity mark (else it would count as busy forever and never
// be idle-suspended), the in-flight gauge, the request metrics and the
// access log line; the client's connection is closed, the router serves on.
func TestPanicEndsTheBookkeeping(t *testing.T) {
	res := newSandboxResolver()
	tracker := &countingTracker{open: map[string]int{}, begun: map[string]int{}}
	var logBuf lockedBuffer
	env := newProxyEnv(t, func(o *Options) {
		o.Resolver = res
		o.Activator = panickingActivator{}
		o.Activity = tracker
		o.AccessLog = &logBuf
	})
	res.set("default", "sb1", resolver.StateSuspended, resolver.ProtocolAuto)
	for _, proto := range []string{viaH1, viaH2C} {
		r := doRequest(env.client(proto), env.sandboxRequest(context.Background(), proto, http.MethodGet, "/", 8888, nil))
		if r.err == nil {
			t.Fatalf("%s: got %d %q, want the connection or stream reset", proto, r.status, r.body)
		}
	}
	if open, begun := tracker.counts("sb1"); open != 0 || begun != 2 {
		t.Fatalf("activity marks open %d, begun %d; want 0 open of 2", open, begun)
	}
	if got := env.metric("sandbox_router_requests_in_flight", nil); got != 0 {
		t.Errorf("in flight %v after the panics", got)
	}
	if got := env.metric("sandbox_router_requests_total", map[string]string{"code": "500"}); got != 2 {
		t.Errorf("requests counted with 500: %v, want 2", got)
	}
	if n := strings.Count(logBuf.String(), `"code":"internal_error"`); n != 2 {
		t.Errorf("%d access log lines with internal_error, want 2:\n%s", n, logBuf.String())
	}
	res.set("default", "sb1", resolver.StateRunning, resolver.ProtocolAuto)
	be, _ := startRecorder(t, false)
	if r := doRequest(env.client(viaH1), env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", be.port, nil)); r.status != 200 {
		t.Fatalf("after the panics: %d %v", r.status, r.err)
	}
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// flakyWriter fails while broken is set, and records what it took.
type flakyWriter struct {
	mu     sync.Mutex
	broken bool
	got    bytes.Buffer
}

func (f *flakyWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken {
		return 0, errors.New("no space left on device")
	}
	return f.got.Write(p)
}

func (f *flakyWriter) set(broken bool) {
	f.mu.Lock()
	f.broken = broken
	f.mu.Unlock()
}

func (f *flakyWriter) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got.String()
}

// TestAccessLogSurvivesWriteErrors: a failed write (a full disk) loses
// lines, counts them and is logged once; the next lines are written when
// the destination recovers.
func TestAccessLogSurvivesWriteErrors(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	var logged lockedBuffer
	dst := &flakyWriter{}
	bw := NewBufferedWriter(dst, BufferedWriterOptions{Size: 64, FlushInterval: time.Hour, Metrics: m, Log: newTestLogger(&logged)})
	defer bw.Close()
	line := func(s string) []byte { return []byte(`{"msg":"` + s + `"}` + "\n") }

	dst.set(true)
	for _, s := range []string{"lost-1", "lost-2", "lost-3", "lost-4"} {
		if _, err := bw.Write(line(s)); err != nil {
			t.Fatalf("Write returned %v; a log write must not fail the request", err)
		}
	}
	if err := bw.Flush(); err == nil {
		t.Fatal("Flush into a broken destination reported no error")
	}
	dst.set(false)
	bw.Write(line("kept"))
	if err := bw.Flush(); err != nil {
		t.Fatalf("Flush after recovery: %v", err)
	}
	if got := dst.String(); got != string(line("kept")) {
		t.Fatalf("destination got %q, want only the line after recovery", got)
	}
	if got := counterValue(t, m.accessLogErrors); got < 2 {
		t.Errorf("errors counted %v, want one per failed write (at least 2)", got)
	}
	if n := strings.Count(logged.String(), "access log write failed"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, logged.String())
	}
}

// shortWriter takes half of its first write and fails, then works.
type shortWriter struct {
	flakyWriter
	cut bool
}

func (s *shortWriter) Write(p []byte) (int, error) {
	if !s.cut {
		s.cut = true
		n, _ := s.flakyWriter.Write(p[:len(p)/2])
		return n, errors.New("no space left on device")
	}
	return s.flakyWriter.Write(p)
}

// TestAccessLogShortWriteEndsTheLine: after a write that stopped inside a
// line, the next line starts on a line of its own.
func TestAccessLogShortWriteEndsTheLine(t *testing.T) {
	dst := &shortWriter{}
	bw := NewBufferedWriter(dst, BufferedWriterOptions{FlushInterval: time.Hour})
	defer bw.Close()
	bw.Write([]byte(`{"msg":"first-line-that-is-cut"}` + "\n"))
	bw.Flush()
	bw.Write([]byte(`{"msg":"second"}` + "\n"))
	bw.Flush()
	lines := strings.Split(strings.TrimSuffix(dst.String(), "\n"), "\n")
	if len(lines) != 2 || lines[1] != `{"msg":"second"}` {
		t.Fatalf("log %q: the line after a short write must stand alone", dst.String())
	}
}

// TestAccessLogWriterErrorsCounted: a plain writer that fails is counted
// by the router too.
func TestAccessLogWriterErrorsCounted(t *testing.T) {
	dst := &flakyWriter{broken: true}
	env := newProxyEnv(t, func(o *Options) { o.AccessLog = dst })
	be, _ := startRecorder(t, false)
	for range 3 {
		doRequest(env.client(viaH1), env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", be.port, nil))
	}
	dst.set(false)
	doRequest(env.client(viaH1), env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", be.port, nil))
	if got := env.metric("sandbox_router_access_log_errors_total", nil); got != 3 {
		t.Errorf("errors %v, want 3", got)
	}
	if n := strings.Count(dst.String(), "\n"); n != 1 {
		t.Errorf("%d lines after recovery, want 1", n)
	}
}

func newTestLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
