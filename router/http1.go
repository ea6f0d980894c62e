package router

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// aLongTimeAgo is a deadline in the past: setting it interrupts blocked
// I/O at once, which is how a departed client cancels its upstream request.
var aLongTimeAgo = time.Unix(1, 0)

// failKind says how far an attempt got, which decides whether it may be
// retried and how the client is answered.
type failKind uint8

const (
	// failDial: no connection; the sandbox cannot have seen the request.
	failDial failKind = iota + 1
	// failStale: a reused keep-alive connection died before any response
	// byte arrived. Retried only for idempotent requests without a body.
	failStale
	// failUpstream: the sandbox broke the exchange (reset, garbage, EOF).
	failUpstream
	// failTimeout: the response header timeout passed.
	failTimeout
	// failClient: the client went away or its request body failed.
	failClient
	// failBodyTooLarge: the request body exceeded the configured limit.
	failBodyTooLarge
)

// attemptError is the error of one upstream attempt.
type attemptError struct {
	kind failKind
	err  error
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// forwarded holds the X-Forwarded-* values computed for one request.
type forwarded struct {
	xff, proto, host string
}

// h1Exchange is one request in flight on an HTTP/1.1 upstream connection.
type h1Exchange struct {
	pool       *connPool
	conn       *upConn
	resp       *http.Response
	stopCancel func() bool
	// bodyDone receives the result of streaming the request body; nil
	// when the request has none.
	bodyDone chan error
	bodyErr  error
	// unblockClientRead interrupts a request-body read stuck on the client.
	unblockClientRead func()
	// sendFailed is set when the body sender failed on its own (the
	// client's body broke off, or the sandbox stopped taking it), before
	// it stops the exchange.
	sendFailed atomic.Bool
	// clientBodyRead is set once the client's body has been read to its
	// end; from then on only writes to the sandbox remain.
	clientBodyRead atomic.Bool

	headTimeout  time.Duration
	headMu       sync.Mutex
	awaitingHead bool
}

// roundTripHTTP1 sends r to addr on a pooled or (always when fresh) new
// connection and reads the response head. The caller streams resp.Body
// and then calls finish.
func (rt *Router) roundTripHTTP1(ctx context.Context, w http.ResponseWriter, r *http.Request, addr netip.AddrPort, fresh bool, fwd *forwarded, upgrade string) (*h1Exchange, error) {
	var c *upConn
	if !fresh {
		c = rt.pool.get(addr)
	}
	reused := c != nil
	if c == nil {
		var err error
		if c, err = rt.pool.dial(ctx, addr); err != nil {
			if ctx.Err() != nil {
				return nil, &attemptError{failClient, err}
			}
			return nil, &attemptError{failDial, err}
		}
	}
	ex := &h1Exchange{pool: rt.pool, conn: c, headTimeout: rt.opts.ResponseHeaderTimeout, awaitingHead: true}
	ex.stopCancel = context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })

	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	writeRequestHead(c.bw, r, &rt.forward, fwd, upgrade, hasBody)
	if hasBody {
		if r.ProtoMajor == 1 {
			// Let the sandbox answer while the client is still sending
			// (bidirectional streams; early 4xx on uploads).
			rc := http.NewResponseController(w)
			_ = rc.EnableFullDuplex()
			ex.unblockClientRead = func() {
				// The client is left mid-body, and net/http cancels the
				// connection's context when a read fails: the connection
				// cannot carry another request.
				closeAfterReply(w)
				_ = rc.SetReadDeadline(aLongTimeAgo)
			}
		} else {
			// HTTP/2: closing the body unblocks a pending read.
			body := r.Body
			ex.unblockClientRead = func() { body.Close() }
		}
		ex.bodyDone = make(chan error, 1)
		go ex.sendBody(r) // arms the response header timeout once the body is sent
	} else if err := c.bw.Flush(); err != nil {
		return nil, ex.fail(ctx, reused, r, err)
	} else {
		ex.armHeadDeadline()
	}

	// A hostile sandbox must not make the router buffer headers without
	// end: http.ReadResponse has no size limit of its own.
	c.limit.remaining = maxResponseHeaderBytes
	// Peek first: an error before the first byte means the sandbox sent
	// nothing, the only case where a reused connection may be retried.
	if _, err := c.br.Peek(1); err != nil {
		return nil, ex.fail(ctx, reused, r, err)
	}
	resp, err := readResponseHead(c.br, r)
	c.limit.remaining = -1
	ex.headRead()
	if err != nil {
		return nil, ex.fail(ctx, false, r, err)
	}
	ex.resp = resp
	return ex, nil
}

// armHeadDeadline starts the response header timeout. It runs when the
// request is fully sent, not before: a long upload is not the sandbox
// being slow to answer.
func (ex *h1Exchange) armHeadDeadline() {
	if ex.headTimeout <= 0 {
		return
	}
	ex.headMu.Lock()
	if ex.awaitingHead {
		ex.conn.nc.SetReadDeadline(time.Now().Add(ex.headTimeout))
	}
	ex.headMu.Unlock()
}

// headRead marks the response head as received and lifts the timeout.
func (ex *h1Exchange) headRead() {
	ex.headMu.Lock()
	ex.awaitingHead = false
	if ex.headTimeout > 0 {
		ex.conn.nc.SetReadDeadline(time.Time{})
	}
	ex.headMu.Unlock()
}

// readResponseHead reads a response, skipping 1xx informational ones other
// than 101 (the router strips Expect, so 100 Continue is not expected, and
// 103 Early Hints is an optimisation a proxy may drop).
func readResponseHead(br *bufio.Reader, r *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(br, r)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if resp.StatusCode < 100 {
			return nil, errors.New("invalid status code")
		}
	}
}

// fail ends an exchange that produced no usable response and classifies
// the error.
func (ex *h1Exchange) fail(ctx context.Context, mayRetry bool, r *http.Request, err error) error {
	// Look before abort: stopping the exchange fails the body sender
	// and, through an interrupted read, cancels the client's context.
	clientGone := ctx.Err() != nil
	sendFailed := ex.sendFailed.Load()
	ex.abort()
	var cbe *clientBodyError
	switch {
	case ex.bodyErr != nil && isMaxBytes(ex.bodyErr):
		return &attemptError{failBodyTooLarge, ex.bodyErr}
	case clientGone || sendFailed && errors.As(ex.bodyErr, &cbe):
		return &attemptError{failClient, errors.Join(err, ex.bodyErr)}
	case sendFailed:
		// The sandbox stopped reading the body (closed, reset): it
		// broke the exchange, and the client must hear so.
		return &attemptError{failUpstream, errors.Join(err, ex.bodyErr)}
	case isTimeout(err):
		return &attemptError{failTimeout, err}
	case mayRetry && retryableRequest(r):
		return &attemptError{failStale, err}
	default:
		return &attemptError{failUpstream, err}
	}
}

// abort closes the connection and waits for the body sender to stop.
func (ex *h1Exchange) abort() {
	ex.stopCancel()
	ex.conn.nc.Close()
	ex.waitBody(true)
}

func (ex *h1Exchange) waitBody(interrupt bool) {
	if ex.bodyDone == nil {
		return
	}
	if interrupt {
		select {
		case ex.bodyErr = <-ex.bodyDone:
			ex.bodyDone = nil
			return
		default:
		}
		if ex.clientBodyRead.Load() {
			// Never touch the client's connection once its body has
			// ended: net/http is then reading it in the background, and
			// a past read deadline fails that read, which cancels the
			// context of every later request on the connection.
			ex.conn.nc.SetWriteDeadline(aLongTimeAgo)
		} else if ex.unblockClientRead != nil {
			ex.unblockClientRead()
		}
	}
	ex.bodyErr = <-ex.bodyDone
	ex.bodyDone = nil
}

// closeAfterReply has net/http close the client's connection after this
// response, lingering so that the client reads the answer before a reset
// (as for a body over its limit). A MaxBytesReader read past its limit is
// the public way to ask for that, whether or not the head is written.
func closeAfterReply(w http.ResponseWriter) {
	var b [1]byte
	_, _ = http.MaxBytesReader(w, io.NopCloser(strings.NewReader("x")), 0).Read(b[:])
}

// finish releases the connection after the response body was streamed;
// complete says whether it was read to the end. The connection goes back
// to the pool only when both directions ended cleanly.
func (ex *h1Exchange) finish(complete bool) {
	reusable := complete && !ex.resp.Close && ex.stopCancel()
	if reusable && ex.bodyDone != nil {
		select {
		case ex.bodyErr = <-ex.bodyDone:
			ex.bodyDone = nil
			reusable = ex.bodyErr == nil
		default:
			if !ex.clientBodyRead.Load() {
				// The sandbox answered without reading the whole request
				// body; the stream is out of step and cannot be reused.
				reusable = false
				break
			}
			// The body is all read and the sandbox answered it: the
			// sender is only finishing its last write. Wait for it
			// (stopping a write the sandbox no longer reads), so that
			// a complete exchange is not mistaken for a broken one.
			ex.conn.nc.SetWriteDeadline(aLongTimeAgo)
			ex.bodyErr = <-ex.bodyDone
			ex.bodyDone = nil
			ex.conn.nc.SetWriteDeadline(time.Time{})
			reusable = ex.bodyErr == nil
		}
	}
	if reusable {
		ex.pool.put(ex.conn)
		return
	}
	ex.stopCancel()
	ex.conn.nc.Close()
	ex.waitBody(true)
	ex.resp.Body.Close()
}

// sendBody streams the client's request body to the sandbox, chunked when
// its length is unknown, flushing each piece so interactive streams flow.
func (ex *h1Exchange) sendBody(r *http.Request) {
	bw := ex.conn.bw
	err := bw.Flush() // the head goes out before the first body byte
	if err == nil {
		var dst io.Writer = bw
		var cw io.WriteCloser
		if r.ContentLength < 0 {
			cw = httputil.NewChunkedWriter(bw)
			dst = cw
		}
		err = streamRequestBody(dst, bw, r.Body, r.ContentLength, &ex.clientBodyRead)
		if err == nil && cw != nil {
			if err = cw.Close(); err == nil {
				_, err = bw.WriteString("\r\n")
			}
		}
		if err == nil {
			err = bw.Flush()
		}
	}
	if err != nil {
		// Whatever failed, the request is incomplete: stop the exchange.
		ex.sendFailed.Store(true)
		ex.conn.nc.SetDeadline(aLongTimeAgo)
	}
	if err == nil {
		ex.armHeadDeadline()
	}
	ex.bodyDone <- err
}

// clientBodyError marks a failure reading the client's body.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "reading request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// eof is set as soon as body reports its end, before the last piece is
// written, so that the exchange knows the client side is done.
func streamRequestBody(dst io.Writer, bw *bufio.Writer, body io.Reader, contentLength int64, eof *atomic.Bool) error {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var sent int64
	for {
		n, rerr := body.Read(buf)
		if rerr == io.EOF {
			eof.Store(true)
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			sent += int64(n)
		}
		if rerr == io.EOF {
			if contentLength >= 0 && sent != contentLength {
				return &clientBodyError{io.ErrUnexpectedEOF}
			}
			return nil
		}
		if rerr != nil {
			return &clientBodyError{rerr}
		}
	}
}

func isMaxBytes(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// retryableRequest: may this request be sent twice? Only methods that are
// idempotent by definition (or carry an idempotency key) and have no body
// to replay.
func retryableRequest(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return headerValue(r.Header, "Idempotency-Key") != "" || headerValue(r.Header, "X-Idempotency-Key") != ""
}

// writeRequestHead writes the request line and headers, without
// allocating: client headers are filtered on the fly instead of copied
// into a new map.
func writeRequestHead(bw *bufio.Writer, r *http.Request, p *forwardPolicy, fwd *forwarded, upgrade string, hasBody bool) {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(requestTarget(r))
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	tokens := connectionTokens(r.Header)
	for k, vv := range r.Header {
		if p.skipRequestHeader(k, tokens) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	writeHeaderLine(bw, "X-Forwarded-For", fwd.xff)
	writeHeaderLine(bw, "X-Forwarded-Proto", fwd.proto)
	writeHeaderLine(bw, "X-Forwarded-Host", fwd.host)
	if upgrade != "" {
		bw.WriteString("Connection: Upgrade\r\n")
		writeHeaderLine(bw, "Upgrade", upgrade)
	}
	switch {
	case !hasBody:
		if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
			bw.WriteString("Content-Length: 0\r\n")
		}
	case r.ContentLength > 0:
		var num [20]byte
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(num[:0], r.ContentLength, 10))
		bw.WriteString("\r\n")
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
}

func writeHeaderLine(bw *bufio.Writer, k, v string) {
	if v == "" || !httpguts.ValidHeaderFieldValue(v) {
		return
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// requestTarget is the origin-form target: the raw request URI when the
// client sent one (no re-encoding, no allocation), else the parsed URL's.
func requestTarget(r *http.Request) string {
	if len(r.RequestURI) > 0 && r.RequestURI[0] == '/' {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}
