package router

import (
	"errors"
	"html"
	"net/http"
	"strconv"
	"strings"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Machine-readable error codes returned in the "code" field. They are part
// of the API: clients may switch on them.
const (
	CodeSandboxNotFound   = "sandbox_not_found"
	CodeSandboxSuspended  = "sandbox_suspended"
	CodeSandboxSuspending = "sandbox_suspending"
	CodeSandboxStarting   = "sandbox_starting"
	CodeSandboxFinished   = "sandbox_finished"
	CodeNotReady          = "router_not_ready"
	CodeUpstreamConnect   = "upstream_connect_failed"
	CodeUpstreamForbidden = "upstream_address_forbidden"
	CodeUpstreamTimeout   = "upstream_timeout"
	CodeUpstreamProtocol  = "upstream_protocol_error"
	CodeRequestTooLarge   = "request_body_too_large"
	CodeShuttingDown      = "router_shutting_down"
	CodeUnsupportedMethod = "unsupported_method"
	CodeUpstreamBusy      = "upstream_busy"
	CodeInvalidTimeout    = "invalid_timeout"
	// The router is at one of its connection caps (limits.go).
	CodeConnectionLimit = "connection_limit"
	CodeTunnelLimit     = "tunnel_limit"
	CodeUpstreamLimit   = "upstream_connection_limit"
)

// StatusError is an error that knows its HTTP status and error code. The
// activator and authorizers return errors of this shape so the router can
// answer with the right status without knowing their internals.
type StatusError interface {
	error
	HTTPStatus() int
	ErrorCode() string
}

// httpError is the router's own StatusError.
type httpError struct {
	status     int
	code       string
	detail     string
	retryAfter int // seconds; 0 means no Retry-After header
}

func (e *httpError) Error() string     { return e.detail }
func (e *httpError) HTTPStatus() int   { return e.status }
func (e *httpError) ErrorCode() string { return e.code }

// writeError answers with the error contract: JSON {"detail", "code"} or,
// for a browser, a small HTML page. detail must never contain internal
// addresses; callers pass fixed strings.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, detail string, retryAfter int) {
	h := w.Header()
	h.Del("Content-Length")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if isGRPC(r) {
		writeGRPCError(w, status, code, detail)
		return
	}
	if wantsHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		title := html.EscapeString(strconv.Itoa(status) + " " + http.StatusText(status))
		_, _ = w.Write([]byte("<!doctype html><html><head><title>" + title + "</title></head><body><h1>" + title +
			"</h1><p>" + html.EscapeString(detail) + "</p><p><code>" + html.EscapeString(code) + "</code></p></body></html>\n"))
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b := make([]byte, 0, 32+len(detail)+len(code))
	b = append(b, `{"detail":`...)
	b = strconv.AppendQuote(b, detail)
	b = append(b, `,"code":`...)
	b = strconv.AppendQuote(b, code)
	b = append(b, "}\n"...)
	_, _ = w.Write(b)
}

// writeGRPCError answers a gRPC call with a trailers-only response: HTTP
// 200 and the status in the only HEADERS frame, as gRPC servers do. Its
// client reads only a gRPC status (a JSON body becomes "unexpected HTTP
// status"), which matters most for proxyless xDS clients, whose calls to
// a sandbox that is not running come to the router. The message carries
// the detail and the router's error code.
func writeGRPCError(w http.ResponseWriter, status int, code, detail string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(grpcCode(status)))
	h.Set("Grpc-Message", grpcMessage(detail+" ("+code+")"))
	w.WriteHeader(http.StatusOK)
}

// grpcCode maps the router's HTTP statuses to gRPC codes, as gRPC's own
// HTTP-to-gRPC mapping does where it has one.
func grpcCode(status int) int {
	switch status {
	case http.StatusBadRequest:
		return 3 // INVALID_ARGUMENT
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound, http.StatusGone:
		return 5 // NOT_FOUND
	case http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType:
		return 12 // UNIMPLEMENTED
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return 8 // RESOURCE_EXHAUSTED
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return 14 // UNAVAILABLE
	case http.StatusGatewayTimeout:
		return 4 // DEADLINE_EXCEEDED
	}
	return 2 // UNKNOWN
}

// grpcMessage percent-encodes what the gRPC spec does not allow raw in
// grpc-message: bytes outside printable ASCII, and '%'.
func grpcMessage(s string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(s)+8), s[:i]...)
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	if b == nil {
		return s
	}
	return string(b)
}

// wantsHTML is true for browsers: text/html listed before any JSON type.
func wantsHTML(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	h := strings.Index(accept, "text/html")
	if h < 0 {
		return false
	}
	j := strings.Index(accept, "application/json")
	return j < 0 || h < j
}

var (
	errUpstreamTimeout = &httpError{status: http.StatusGatewayTimeout, code: CodeUpstreamTimeout, detail: "sandbox did not answer in time"}
	errClientTimeout   = &httpError{status: http.StatusGatewayTimeout, code: CodeUpstreamTimeout, detail: "the request did not complete within X-Sandbox-Timeout"}
	errUpstreamBusy    = &httpError{status: http.StatusServiceUnavailable, code: CodeUpstreamBusy, detail: "sandbox has too many requests in progress", retryAfter: 1}
)

// answer writes the router's own response for err.
func (rt *Router) answer(w http.ResponseWriter, r *http.Request, rec *record, err error) {
	var he *httpError
	if errors.As(err, &he) {
		rec.status, rec.code = he.status, he.code
		writeError(w, r, he.status, he.code, he.detail, he.retryAfter)
		return
	}
	var se StatusError
	if errors.As(err, &se) {
		rec.status, rec.code = se.HTTPStatus(), se.ErrorCode()
		retryAfter := 0
		if ra, ok := se.(interface{ RetryAfterSeconds() int }); ok {
			retryAfter = ra.RetryAfterSeconds()
		}
		if ch, ok := se.(interface{ WWWAuthenticate() string }); ok && ch.WWWAuthenticate() != "" {
			w.Header().Set("WWW-Authenticate", ch.WWWAuthenticate())
		}
		if rh, ok := se.(interface{ ResponseHeaders() http.Header }); ok {
			for k, vv := range rh.ResponseHeaders() {
				w.Header()[k] = vv
			}
		}
		writeError(w, r, rec.status, rec.code, se.Error(), retryAfter)
		return
	}
	if ctx := r.Context(); ctx.Err() != nil {
		if contextFailure(ctx) == failTimeout {
			rt.answer(w, r, rec, errClientTimeout)
			return
		}
		rec.status, rec.code = statusClientClosed, "client_closed"
		return
	}
	rt.log.Error("unexpected routing error", "err", err)
	rec.status, rec.code = http.StatusBadGateway, CodeUpstreamConnect
	writeError(w, r, http.StatusBadGateway, CodeUpstreamConnect, "sandbox could not be reached", 0)
}

// answerAttempt maps a failed upstream attempt to the client's answer.
// Details are fixed strings: internal addresses never reach the client.
func (rt *Router) answerAttempt(w http.ResponseWriter, r *http.Request, rec *record, ae *attemptError) {
	var he *httpError
	switch ae.kind {
	case failClient:
		rec.status, rec.code = statusClientClosed, "client_closed"
		if !clientLeft(r.Context()) {
			// The client is still connected but its request broke off
			// (a malformed or truncated body): reset rather than let
			// net/http send an empty 200.
			rec.abort = true
		}
		return
	case failBodyTooLarge:
		he = errBodyTooLarge
	case failTimeout:
		he = errUpstreamTimeout
	case failBusy:
		he = errUpstreamBusy
	case failDial:
		he = &httpError{status: http.StatusBadGateway, code: CodeUpstreamConnect, detail: "sandbox refused the connection", retryAfter: 1}
	default:
		he = &httpError{status: http.StatusBadGateway, code: CodeUpstreamProtocol, detail: "sandbox closed the connection without a valid response"}
	}
	rt.log.Debug("upstream attempt failed", "sandbox", rec.key.Name, "namespace", rec.key.Namespace, "err", ae.err)
	rt.answer(w, r, rec, he)
	rt.noteSandboxError(rec.key.Key, he)
}

// noteSandboxError tells Options.ErrorEvents of a failure of the
// sandbox's own (5xx), if the resolver knows the sandbox: names a client
// made up (a direct pod address) must not fill its record.
func (rt *Router) noteSandboxError(key resolver.Key, he *httpError) {
	if rt.opts.ErrorEvents == nil || he.status < 500 || rt.lookup(key).State == resolver.StateUnknown {
		return
	}
	rt.opts.ErrorEvents.SandboxError(key, he.status, he.code)
}

func writeHealth(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"status":"ok"}`))
}

// statusWriter notes the status a handler of the router's own (the
// minting endpoint) answers with, for the access log and metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (the minting
// endpoint bounds how long its body may take).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
