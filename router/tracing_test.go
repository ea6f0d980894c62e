package router

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// lockedBuffer is an access-log sink safe for the handler's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(l.b.Bytes()), []byte("\n")) {
		m := map[string]any{}
		if json.Unmarshal(line, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestTracePropagationAndAccessLog: with a tracer, the sandbox receives a
// traceparent of the client's trace whose parent is the router's span, the
// span is recorded, and the access-log line carries the trace id.
func TestTracePropagationAndAccessLog(t *testing.T) {
	got := make(chan string, 1)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Traceparent")
	}), false)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	logs := &lockedBuffer{}
	rt, err := New(Options{
		Resolver:           oneSandbox{netip.MustParseAddr("127.0.0.1")},
		AllowLoopbackPodIP: true,
		Metrics:            NewMetrics(prometheus.NewRegistry()),
		TracerProvider:     tp,
		AccessLog:          logs,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	srv, _ := startServer(t, rt, ServerOptions{HTTPAddr: "127.0.0.1:0", DrainTimeout: 5e9})

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const clientSpan = "00f067aa0ba902b7"
	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.HTTPAddr()+"/x?token=secret", nil)
	req.Header.Set(HeaderSandboxID, "sb1")
	req.Header.Set(HeaderSandboxPort, strconv.Itoa(int(be.addrPort().Port())))
	req.Header.Set("Traceparent", "00-"+traceID+"-"+clientSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	tpHeader := recv(t, got, "traceparent at the sandbox")
	if len(tpHeader) != 55 || tpHeader[3:35] != traceID || tpHeader[36:52] == clientSpan {
		t.Fatalf("sandbox traceparent = %q: want trace %s with the router's span as parent", tpHeader, traceID)
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].SpanContext().TraceID().String() != traceID || spans[0].Parent().SpanID().String() != clientSpan {
		t.Fatalf("recorded spans = %v", spans)
	}
	if spans[0].SpanContext().SpanID().String() != tpHeader[36:52] {
		t.Fatal("sandbox's parent span is not the router's span")
	}

	lines := logs.lines()
	if len(lines) != 1 {
		t.Fatalf("access log lines = %d: %s", len(lines), logs.b.String())
	}
	l := lines[0]
	if l["sandbox"] != "sb1" || l["namespace"] != "default" || l["status"] != float64(200) || l["trace_id"] != traceID || l["path"] != "/x" {
		t.Fatalf("access log line = %v", l)
	}
	if bytes.Contains(logs.b.Bytes(), []byte("secret")) {
		t.Fatal("query string leaked into the access log")
	}
}

// TestTraceparentPassesThroughWithoutTracer: no exporter configured, the
// client's context still reaches the sandbox unchanged.
func TestTraceparentPassesThroughWithoutTracer(t *testing.T) {
	got := make(chan string, 1)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Traceparent")
	}), false)
	srv, _ := startServer(t, newTestRouter(t), ServerOptions{HTTPAddr: "127.0.0.1:0", DrainTimeout: 5e9})
	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.HTTPAddr()+"/", nil)
	req.Header.Set(HeaderSandboxID, "sb1")
	req.Header.Set(HeaderSandboxPort, strconv.Itoa(int(be.addrPort().Port())))
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req.Header.Set("Traceparent", tp)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h := recv(t, got, "traceparent"); h != tp {
		t.Fatalf("traceparent = %q, want %q", h, tp)
	}
}
