package router

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// logAccess writes one JSON line per request. Query strings are left out:
// they often carry tokens.
func (rt *Router) logAccess(r *http.Request, rec *record, proto string, start time.Time, elapsed time.Duration, span trace.Span) {
	traceID := ""
	if span != nil {
		if sc := span.SpanContext(); sc.HasTraceID() {
			traceID = sc.TraceID().String()
		}
	} else {
		traceID = traceIDFromHeader(r.Header)
	}
	attrs := [...]slog.Attr{
		slog.Time("start", start),
		slog.String("sandbox", rec.key.Name),
		slog.String("namespace", rec.key.Namespace),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("protocol", proto),
		slog.Int("status", rec.status),
		slog.String("code", rec.code),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		slog.Int64("bytes_in", rec.bytesIn),
		slog.Int64("bytes_out", rec.bytesOut),
		slog.Int("retries", rec.retries),
		slog.Bool("upgraded", rec.upgraded),
		slog.String("client", r.RemoteAddr),
		slog.String("trace_id", traceID),
	}
	rt.opts.AccessLog.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs[:]...)
}

// BufferedWriter batches access-log lines so that logging costs a memory
// copy per request rather than a write system call. Lines are flushed
// every interval and when the buffer fills; a line is never split.
type BufferedWriter struct {
	mu   sync.Mutex
	bw   *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// NewBufferedWriter buffers up to size bytes for dst.
func NewBufferedWriter(dst io.Writer, size int, interval time.Duration) *BufferedWriter {
	b := &BufferedWriter{bw: bufio.NewWriterSize(dst, size), stop: make(chan struct{}), done: make(chan struct{})}
	go b.flushLoop(interval)
	return b
}

func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(p) > b.bw.Available() && b.bw.Buffered() > 0 {
		if err := b.bw.Flush(); err != nil {
			return 0, err
		}
	}
	return b.bw.Write(p)
}

func (b *BufferedWriter) flushLoop(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.Flush()
		}
	}
}

// Flush writes out what is buffered.
func (b *BufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bw.Flush()
}

// Close stops the flusher and writes out the rest.
func (b *BufferedWriter) Close() error {
	close(b.stop)
	<-b.done
	return b.Flush()
}
