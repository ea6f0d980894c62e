package router

import (
	"html"
	"net/http"
	"strconv"
	"strings"
)

// Machine-readable error codes returned in the "code" field. They are part
// of the API: clients may switch on them.
const (
	CodeSandboxNotFound   = "sandbox_not_found"
	CodeSandboxSuspended  = "sandbox_suspended"
	CodeSandboxSuspending = "sandbox_suspending"
	CodeSandboxStarting   = "sandbox_starting"
	CodeSandboxFinished   = "sandbox_finished"
	CodePodIPMismatch     = "pod_ip_mismatch"
	CodeNotReady          = "router_not_ready"
	CodeUpstreamConnect   = "upstream_connect_failed"
	CodeUpstreamForbidden = "upstream_address_forbidden"
	CodeUpstreamTimeout   = "upstream_timeout"
	CodeUpstreamProtocol  = "upstream_protocol_error"
	CodeRequestTooLarge   = "request_body_too_large"
	CodeShuttingDown      = "router_shutting_down"
	CodeUnsupportedMethod = "unsupported_method"
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
