package router

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// logAccess writes one JSON line per request. The line is built by hand
// into a pooled buffer: a general-purpose structured logger cost about a
// tenth of the router's CPU on small requests. Query strings are left out:
// they often carry tokens.
func (rt *Router) logAccess(r *http.Request, rec *record, elapsed time.Duration) {
	traceID := ""
	if rec.span != nil {
		if sc := rec.span.SpanContext(); sc.HasTraceID() {
			traceID = sc.TraceID().String()
		}
	} else {
		traceID = traceIDFromHeader(r.Header)
	}
	bp := logBufPool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"time":"`...)
	b = rec.start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","msg":"request","sandbox":`...)
	b = appendJSONString(b, rec.key.Name)
	b = append(b, `,"namespace":`...)
	b = appendJSONString(b, rec.key.Namespace)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, r.URL.Path)
	b = append(b, `,"protocol":"`...)
	b = append(b, rec.proto...)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(rec.status), 10)
	b = append(b, `,"code":"`...)
	b = append(b, rec.code...) // fixed identifiers, no escaping needed
	b = append(b, `","duration_ms":`...)
	b = strconv.AppendFloat(b, float64(elapsed.Microseconds())/1000, 'f', -1, 64)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, rec.bytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, rec.bytesOut, 10)
	b = append(b, `,"retries":`...)
	b = strconv.AppendInt(b, int64(rec.retries), 10)
	b = append(b, `,"upgraded":`...)
	b = strconv.AppendBool(b, rec.upgraded)
	b = append(b, `,"client":`...)
	b = appendJSONString(b, r.RemoteAddr)
	b = append(b, `,"user":`...)
	b = appendJSONString(b, rec.caller.User)
	b = append(b, `,"auth":"`...)
	b = append(b, rec.caller.Auth...) // fixed identifiers
	b = append(b, '"')
	b = append(b, `,"trace_id":"`...)
	b = append(b, traceID...) // hex only
	b = append(b, "\"}\n"...)
	if _, err := rt.opts.AccessLog.Write(b); err != nil {
		rt.accessLogFailed(err)
	}
	*bp = b
	logBufPool.Put(bp)
}

// accessLogFailed counts a lost access-log line and logs the first
// failure; requests go on being served and logged.
func (rt *Router) accessLogFailed(err error) {
	rt.metrics.accessLogErrors.Inc()
	if !rt.accessLogBroken.Swap(true) {
		rt.log.Error("access log write failed; lines are lost until it recovers (sandbox_router_access_log_errors_total counts them)", "err", err)
	}
}

var logBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendJSONString appends s as a JSON string. Control characters, quotes
// and backslashes are escaped and invalid UTF-8 becomes U+FFFD, so a
// hostile path cannot break the line or forge fields.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// BufferedWriter batches access-log lines so that logging costs a memory
// copy per request rather than a write system call. Lines are flushed
// every interval and when the buffer fills; a line is never split. A
// failed write loses the buffered lines, is counted in Metrics (the first
// one is logged), and never stops later lines: a full disk that frees up
// gets the log back.
type BufferedWriter struct {
	mu      sync.Mutex
	dst     *lineWriter
	bw      *bufio.Writer
	metrics *Metrics
	log     *slog.Logger
	logged  bool
	stop    chan struct{}
	done    chan struct{}
}

// BufferedWriterOptions configure a BufferedWriter.
type BufferedWriterOptions struct {
	Size          int           // buffer size in bytes (default 64 KiB)
	FlushInterval time.Duration // default 100 ms
	Metrics       *Metrics      // counts failed writes; nil: not counted
	Log           *slog.Logger  // the first failure is logged here
}

// NewBufferedWriter buffers lines for dst.
func NewBufferedWriter(dst io.Writer, opts BufferedWriterOptions) *BufferedWriter {
	if opts.Size <= 0 {
		opts.Size = 64 << 10
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 100 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	lw := &lineWriter{w: dst}
	b := &BufferedWriter{dst: lw, bw: bufio.NewWriterSize(lw, opts.Size), metrics: opts.Metrics, log: opts.Log,
		stop: make(chan struct{}), done: make(chan struct{})}
	go b.flushLoop(opts.FlushInterval)
	return b
}

// Write buffers p; it never fails (a failure is counted, see the type).
func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(p) > b.bw.Available() && b.bw.Buffered() > 0 {
		b.flushLocked()
	}
	if _, err := b.bw.Write(p); err != nil {
		b.failed(err)
	}
	return len(p), nil
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

// Flush writes out what is buffered; it reports a failure too.
func (b *BufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *BufferedWriter) flushLocked() error {
	err := b.bw.Flush()
	if err != nil {
		b.failed(err)
	}
	return err
}

// failed drops what the writer holds: bufio.Writer keeps its first error
// for good, so without a reset one failure would end the log.
func (b *BufferedWriter) failed(err error) {
	b.bw.Reset(b.dst)
	if b.metrics != nil {
		b.metrics.accessLogErrors.Inc()
	}
	if !b.logged {
		b.logged = true
		b.log.Error("access log write failed; lines are lost until it recovers (sandbox_router_access_log_errors_total counts them)", "err", err)
	}
}

// Close stops the flusher and writes out the rest.
func (b *BufferedWriter) Close() error {
	close(b.stop)
	<-b.done
	return b.Flush()
}

// lineWriter remembers a write that stopped inside a line (a short write
// to a full disk) and ends that line before the next write, so that the
// next line is not glued to half of a lost one.
type lineWriter struct {
	w      io.Writer
	inLine bool
}

func (l *lineWriter) Write(p []byte) (int, error) {
	if l.inLine {
		if _, err := l.w.Write([]byte{'\n'}); err != nil {
			return 0, err
		}
		l.inLine = false
	}
	n, err := l.w.Write(p)
	if n > 0 && n < len(p) {
		l.inLine = p[n-1] != '\n'
	}
	return n, err
}
