package router

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// copyBufSize is the chunk a body is moved in. Bodies are streamed through
// one pooled buffer per direction, never held whole, so a 1 GiB transfer
// costs the same memory as a 1 KiB one.
const copyBufSize = 32 << 10

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// errClientGone marks a failure to write to the client (it disconnected).
var errClientGone = errors.New("client went away")

// shouldFlushEachWrite reports whether a response is a stream whose parts
// must reach the client as they arrive: server-sent events, gRPC, and any
// body of unknown length (chunked token streams, long polls). Bodies of
// known length are left to the server's own buffering.
func shouldFlushEachWrite(resp *http.Response) bool {
	if resp.ContentLength < 0 {
		return true
	}
	ct := headerValue(resp.Header, "Content-Type")
	return hasPrefixFold(ct, "text/event-stream") || hasPrefixFold(ct, "application/grpc")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// copyBody streams src to the client. It returns the bytes written and an
// error that is errClientGone-wrapped when the client side failed, so the
// caller can tell a broken sandbox from a departed client. ready, when
// not nil, waits until src has something to give (bytes, its end or an
// error) without a copy buffer: a stream that sits idle between events
// (server-sent events, a long poll) then holds no buffer while it waits,
// and borrows one only while bytes flow.
func copyBody(w http.ResponseWriter, src io.Reader, flush bool, ready func() error) (int64, error) {
	var flusher http.Flusher
	if flush {
		flusher, _ = w.(http.Flusher)
	}
	var written int64
	for {
		if ready != nil {
			// An error here comes back from the Read below.
			_ = ready()
		}
		n, rerr, werr := passOnce(w, src)
		written += int64(n)
		if werr != nil {
			return written, errors.Join(errClientGone, werr)
		}
		if n > 0 && flusher != nil {
			flusher.Flush()
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}

// passOnce moves what one Read of src gives into dst, through a buffer
// borrowed from the pool for that move only: between moves a stream or a
// tunnel holds none. It returns the bytes written, the read's error and
// the write's.
func passOnce(dst io.Writer, src io.Reader) (n int, rerr, werr error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	nr, rerr := src.Read(*bp)
	if nr > 0 {
		n, werr = dst.Write((*bp)[:nr])
	}
	return n, rerr, werr
}

// announceTrailers declares the trailer keys an upstream response announced,
// so HTTP/1.1 clients learn them before the body. It returns those keys.
func announceTrailers(h http.Header, trailer http.Header) []string {
	if len(trailer) == 0 {
		return nil
	}
	keys := make([]string, 0, len(trailer))
	for k := range trailer {
		keys = append(keys, k)
	}
	h["Trailer"] = []string{strings.Join(keys, ", ")}
	return keys
}

// writeTrailers sends the upstream's trailers after the body. Keys not
// announced up front (gRPC's grpc-status, for one) use the TrailerPrefix
// form that net/http turns into real trailers.
func writeTrailers(h http.Header, trailer http.Header, announced []string) {
	for k, vv := range trailer {
		if slices.Contains(announced, k) {
			h[k] = vv
		} else {
			h[http.TrailerPrefix+k] = vv
		}
	}
}
