package mcp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// dataPlane serves runtime calls through the router in process: the
// request walks the router's whole way (routing key, the caller's access
// check, the activator that wakes a suspended sandbox, the upstream pool,
// the access log), with no socket and no second listener, so a tool call
// is judged exactly as the caller's own HTTP request would be.
type dataPlane struct {
	router http.Handler
	log    *slog.Logger
}

// internalHost is the Host of the router's in-process requests: one no
// base domain can match (it has no dot), so the X-Sandbox-* headers
// name the sandbox.
const internalHost = "sandbox-router"

// call sends one runtime API request for c to the sandbox key (port
// 8888, the runtime's) and returns the response, its body streaming.
// timeout becomes X-Sandbox-Timeout, the router's deadline for the
// request, the hold of a waking sandbox included.
func (d dataPlane) call(ctx context.Context, c *caller, key resolver.Key, method, path, contentType string, body io.Reader, timeout time.Duration) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+internalHost+path, body)
	if err != nil {
		return nil, err
	}
	if body == nil {
		req.Body = http.NoBody // as a server's request always has one
	}
	req.RequestURI = path
	req.Host = internalHost
	req.RemoteAddr = c.request.RemoteAddr
	h := req.Header
	h.Set("Authorization", "Bearer "+c.token) // judged by the router, stripped before the sandbox
	h.Set("X-Sandbox-ID", key.Name)
	h.Set("X-Sandbox-Namespace", key.Namespace)
	h.Set("X-Sandbox-Port", "8888")
	h.Set("X-Sandbox-Timeout", strconv.Itoa(max(1, int(timeout/time.Second))))
	h.Set("User-Agent", "sandbox-router-mcp")
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return d.roundTrip(req)
}

// errAborted is a response the router abandoned after its head.
var errAborted = errors.New("the router aborted the response")

// roundTrip serves req with the router and returns the response as soon
// as its head is written; the body streams through a pipe, so a large
// answer is read as it comes and a reader that stops reading (closes the
// body) stops the router too.
func (d dataPlane) roundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	req = req.WithContext(ctx)
	pr, pw := io.Pipe()
	w := &pipeResponse{header: make(http.Header), pw: pw, head: make(chan *http.Response, 1),
		body: &cancelBody{ReadCloser: pr, cancel: cancel}, req: req}
	go func() {
		defer func() {
			// A panic is an abandoned response (the router aborts a
			// stream it cannot finish so); anything else would take the
			// whole process down from this goroutine.
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler && d.log != nil {
					d.log.Error("mcp: the router panicked serving a runtime call", "panic", p)
				}
				w.WriteHeader(http.StatusBadGateway) // if nothing was written yet
				pw.CloseWithError(errAborted)
				return
			}
			w.WriteHeader(http.StatusOK) // nothing written: an empty 200
			pw.Close()
		}()
		d.router.ServeHTTP(w, req)
	}()
	select {
	case resp := <-w.head:
		if err := ctx.Err(); err != nil { // the caller left as the head came
			resp.Body.Close()
			return nil, err
		}
		return resp, nil
	case <-ctx.Done():
		cancel()
		pr.CloseWithError(ctx.Err()) // the router's writes fail, and it ends
		return nil, ctx.Err()
	}
}

// pipeResponse is the http.ResponseWriter of an in-process request.
type pipeResponse struct {
	header http.Header
	pw     *io.PipeWriter
	body   io.ReadCloser
	req    *http.Request
	head   chan *http.Response
	once   sync.Once
}

func (w *pipeResponse) Header() http.Header { return w.header }

func (w *pipeResponse) WriteHeader(status int) {
	if status < 200 {
		return // informational: not the response
	}
	w.once.Do(func() {
		w.head <- &http.Response{
			Status: strconv.Itoa(status) + " " + http.StatusText(status), StatusCode: status,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: w.header.Clone(), Body: w.body, ContentLength: -1, Request: w.req,
		}
	})
}

func (w *pipeResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(b)
}

// Flush: every Write reaches the reader already.
func (w *pipeResponse) Flush() {}

// cancelBody ends the in-process request when its reader closes it.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	b.cancel()
	return b.ReadCloser.Close()
}
