package router

import (
	"bufio"
	"bytes"
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
	// failBusy: the endpoint is at its connection cap and none came free
	// in time (or too many requests wait already); never sent.
	failBusy
	// failReset: a new connection died before any response byte. Retried
	// like a failed connect for requests that may be sent twice.
	failReset
)

// attemptError is the error of one upstream attempt.
type attemptError struct {
	kind failKind
	err  error
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// h1Exchange is one request in flight on an HTTP/1.1 upstream connection.
type h1Exchange struct {
	conn       *upConn
	resp       *http.Response
	stopCancel func() bool
	// connTokens are the headers the response's Connection header named.
	connTokens []string
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
	c, reused, err := rt.pool.acquire(ctx, addr, fresh)
	if err != nil {
		switch {
		case errors.Is(err, errConnQueueFull), errors.Is(err, errConnWaitTimeout):
			return nil, &attemptError{failBusy, err}
		case errors.Is(err, errUpstreamLimit):
			return nil, upstreamLimitError
		case ctx.Err() != nil:
			return nil, &attemptError{contextFailure(ctx), err}
		}
		return nil, &attemptError{failDial, err}
	}
	ex := &h1Exchange{conn: c, headTimeout: rt.opts.ResponseHeaderTimeout, awaitingHead: true}
	// A client that leaves (or whose deadline passes) discards the
	// connection: closing it interrupts any read or write whatever
	// deadline the exchange has set, and its place under the cap is
	// freed even if the exchange never gets to (a panic below it).
	ex.stopCancel = context.AfterFunc(ctx, c.discard)

	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	writeRequestHead(c.writer(), r, &rt.forward, fwd, upgrade, hasBody)
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
	} else {
		err := c.bw.Flush()
		c.releaseWriter()
		if err != nil {
			return nil, ex.fail(ctx, reused, true, r, err)
		}
		ex.armHeadDeadline()
	}

	// A hostile sandbox must not make the router buffer headers without
	// end: http.ReadResponse has no size limit of its own. The head's
	// bytes are kept until it is parsed, for its Connection header.
	hb := headBufPool.Get().(*[]byte)
	defer putHeadBuf(hb)
	*hb = (*hb)[:0]
	c.limit.remaining, c.limit.head = maxResponseHeaderBytes, hb
	// Peek first: an error before the first byte means the sandbox sent
	// nothing, the only case where a reused connection may be retried.
	if _, err := c.br.Peek(1); err != nil {
		c.limit.remaining, c.limit.head = -1, nil
		return nil, ex.fail(ctx, reused, true, r, err)
	}
	resp, interim, err := readResponseHead(c.br, r)
	c.limit.remaining, c.limit.head = -1, nil
	ex.headRead()
	if err != nil {
		return nil, ex.fail(ctx, reused, false, r, err)
	}
	ex.resp = resp
	ex.connTokens = responseConnectionTokens(resp, *hb, interim)
	return ex, nil
}

// headBufPool holds the buffers a response head is recorded into.
var headBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func putHeadBuf(b *[]byte) {
	if cap(*b) <= 64<<10 { // a huge head's buffer is not worth keeping
		headBufPool.Put(b)
	}
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

// bodyReady waits, in the connection's own read buffer, until the
// response body has more to give, for copyBody to hold no buffer while a
// stream is idle. Only for bodies whose end comes as bytes (chunked) or
// as the close: until the body reader has returned its end there are
// bytes still to come, so the wait cannot outlast the body. A body of
// known length may be read to its last byte with nothing more to come.
func (ex *h1Exchange) bodyReady() func() error {
	if ex.resp.ContentLength >= 0 || ex.resp.Body == http.NoBody {
		return nil
	}
	br := ex.conn.br
	return func() error {
		_, err := br.Peek(1)
		return err
	}
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
// 103 Early Hints is an optimisation a proxy may drop). interim counts the
// heads skipped.
func readResponseHead(br *bufio.Reader, r *http.Request) (resp *http.Response, interim int, err error) {
	for {
		resp, err := http.ReadResponse(br, r)
		if err != nil {
			return nil, interim, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, interim, nil
		}
		if resp.StatusCode < 100 {
			return nil, interim, errors.New("invalid status code")
		}
		interim++
	}
}

// responseConnectionTokens returns the header names a response's
// Connection header listed. net/http deletes the whole header of an
// HTTP/1.1 response when it says close, so "Connection: close, X-Custom"
// would let X-Custom through; the names are then read again from the raw
// head (after its interim heads).
func responseConnectionTokens(resp *http.Response, raw []byte, interim int) []string {
	if v, ok := resp.Header["Connection"]; ok {
		return appendConnectionTokens(nil, v)
	}
	if !resp.Close || resp.ProtoMajor != 1 || resp.ProtoMinor < 1 {
		return nil
	}
	tokens := []string{}
	head := 0
	inConnection := false
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			if head == interim {
				break
			}
			head++
			continue
		}
		if head != interim {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			// An obsolete folded continuation of the previous field.
			if inConnection {
				tokens = appendConnectionTokens(tokens, []string{string(line)})
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		inConnection = ok && strings.EqualFold(string(name), "Connection")
		if inConnection {
			tokens = appendConnectionTokens(tokens, []string{string(value)})
		}
	}
	return tokens
}

// fail ends an exchange that produced no usable response and classifies
// the error. unanswered: not one byte of a response arrived; reused: the
// connection came from the pool.
func (ex *h1Exchange) fail(ctx context.Context, reused, unanswered bool, r *http.Request, err error) error {
	// Look before abort: stopping the exchange fails the body sender
	// and, through an interrupted read, cancels the client's context.
	ctxDone := ctx.Err() != nil
	sendFailed := ex.sendFailed.Load()
	ex.abort()
	var cbe *clientBodyError
	switch {
	case ex.bodyErr != nil && isMaxBytes(ex.bodyErr):
		return &attemptError{failBodyTooLarge, ex.bodyErr}
	case ctxDone:
		return &attemptError{contextFailure(ctx), errors.Join(err, ex.bodyErr)}
	case sendFailed && errors.As(ex.bodyErr, &cbe):
		return &attemptError{failClient, errors.Join(err, ex.bodyErr)}
	case sendFailed:
		// The sandbox stopped reading the body (closed, reset): it
		// broke the exchange, and the client must hear so.
		return &attemptError{failUpstream, errors.Join(err, ex.bodyErr)}
	case isTimeout(err):
		return &attemptError{failTimeout, err}
	case unanswered && reused && retryableRequest(r):
		return &attemptError{failStale, err}
	case unanswered && retryableRequest(r):
		// A new connection the sandbox dropped unanswered: most often a
		// pod stopping (a suspension racing the request) as it took it.
		// A request that may be sent twice is retried like a connect,
		// re-resolved, so it may be held for the resume.
		return &attemptError{failReset, err}
	default:
		return &attemptError{failUpstream, err}
	}
}

// abort discards the connection and waits for the body sender to stop.
func (ex *h1Exchange) abort() {
	ex.stopCancel()
	ex.conn.discard()
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
		ex.conn.pool.put(ex.conn)
		return
	}
	ex.stopCancel()
	ex.conn.discard()
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
	ex.conn.releaseWriter()
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
	p.endToEnd(r.Header, func(k string, vv []string) {
		for _, v := range vv {
			writeHeaderLine(bw, k, v)
		}
	})
	fwd.each(func(k, v string) { writeHeaderLine(bw, k, v) })
	if upgrade != "" {
		bw.WriteString("Connection: Upgrade\r\n")
		if httpguts.ValidHeaderFieldValue(upgrade) {
			writeHeaderLine(bw, "Upgrade", upgrade)
		}
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

// writeHeaderLine writes one header line; values were validated.
func writeHeaderLine(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}
