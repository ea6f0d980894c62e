package router

import (
	"io"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sandbox-router/sandbox-router/access"
)

// record is what one request did, for metrics, the trace and the access
// log.
type record struct {
	start    time.Time
	proto    string     // client protocol label
	span     trace.Span // nil without tracing
	key      routingKey
	status   int
	code     string // error code when the router answered itself
	body     *countingBody
	bytesIn  int64
	bytesOut int64
	retries  int
	upstream netip.AddrPort
	upgraded bool
	activity Activity // the sandbox's activity mark, ended with the request
	// accessRelease frees what the access check held for the request;
	// caller is whom it admitted.
	accessRelease func()
	caller        access.Caller
	// abort: the response was cut short after its head was sent; the
	// client connection must be reset so it cannot mistake it for a
	// complete one.
	abort bool
	// served: the request path returned; false in end means it panicked.
	served bool
	// tunneled: a tunnel carries the request on and finishes its record
	// when it closes.
	tunneled bool
}

// statusClientClosed is logged when the client left before the answer
// (nginx's convention; never sent on the wire).
const statusClientClosed = 499

// begin opens the request's bookkeeping and its span; it returns the
// request carrying the span's context.
func (rt *Router) begin(r *http.Request, rec *record) *http.Request {
	rec.start = time.Now()
	rec.proto = protocolLabel(r)
	rt.metrics.inFlight.Inc()
	if rt.tracing != nil {
		var ctx = r.Context()
		ctx, rec.span = rt.tracing.start(r)
		r = r.WithContext(ctx)
	}
	return r
}

// end closes the bookkeeping however the request ended: the sandbox's
// activity mark, the in-flight gauge, metrics, span and access log. Run
// deferred, it also runs when the request path panics, so a panic can
// never leave a sandbox marked busy (and so never idle-suspended); the
// panic then goes on to net/http, which closes the connection.
func (rt *Router) end(r *http.Request, rec *record) {
	if !rec.served {
		if p := recover(); p != nil {
			rec.status, rec.code = http.StatusInternalServerError, "internal_error"
			rt.log.Error("request handler panicked", "panic", p, "sandbox", rec.key.Name, "namespace", rec.key.Namespace, "stack", string(debug.Stack()))
			defer panic(p)
		}
	}
	if rec.tunneled {
		return
	}
	rt.finishRecord(r, rec)
}

// finishRecord closes the request's bookkeeping: the sandbox's activity
// mark, what the access check held, the in-flight gauge, metrics, span and
// access log.
func (rt *Router) finishRecord(r *http.Request, rec *record) {
	if rec.activity != nil {
		rec.activity.End()
	}
	if rec.accessRelease != nil {
		rec.accessRelease()
	}
	if rec.body != nil {
		rec.bytesIn = rec.body.n.Load()
	}
	elapsed := time.Since(rec.start)
	rt.metrics.inFlight.Dec()
	rt.metrics.observeRequest(rec.status, rec.proto, elapsed.Seconds())
	rt.metrics.bytesIn.Add(float64(rec.bytesIn))
	rt.metrics.bytesOut.Add(float64(rec.bytesOut))
	if rec.span != nil {
		rt.tracing.end(rec.span, rec)
	}
	if rt.opts.AccessLog != nil {
		rt.logAccess(r, rec, elapsed)
	}
}

func protocolLabel(r *http.Request) string {
	switch {
	case r.ProtoMajor == 2 && r.TLS != nil:
		return "h2"
	case r.ProtoMajor == 2:
		return "h2c"
	default:
		return "http1"
	}
}

// countingBody counts request body bytes for the access log and notes the
// end of the body. It may be read by a transport goroutine while the
// handler looks at it, hence the atomics.
type countingBody struct {
	ReadCloser io.ReadCloser
	n          atomic.Int64
	eof        atomic.Bool
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	if err == io.EOF {
		c.eof.Store(true)
	}
	return n, err
}

func (c *countingBody) Close() error { return c.ReadCloser.Close() }
