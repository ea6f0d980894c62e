package router

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/sandbox-router/sandbox-router/access"
)

// HeaderSandboxTimeout is the client's deadline for the whole request, in
// seconds (the upstream SDKs send it): "30", "4.5". It is capped by
// Options.MaxClientTimeout and counts the time a request is held while its
// sandbox resumes.
const HeaderSandboxTimeout = "X-Sandbox-Timeout"

// DefaultMaxClientTimeout is the default cap of X-Sandbox-Timeout.
const DefaultMaxClientTimeout = time.Hour

// errClientDeadline is the cause of a request context ended by the
// client's X-Sandbox-Timeout: the request timed out, the client did not
// leave.
var errClientDeadline = errors.New("the deadline of X-Sandbox-Timeout passed")

// contextFailure says why a request's context ended: the client left, or
// the deadline it asked for with X-Sandbox-Timeout passed.
func contextFailure(ctx context.Context) failKind {
	if errors.Is(context.Cause(ctx), errClientDeadline) {
		return failTimeout
	}
	return failClient
}

// clientLeft reports whether ctx ended because the client went away.
func clientLeft(ctx context.Context) bool {
	return ctx.Err() != nil && contextFailure(ctx) == failClient
}

var (
	errBadMethod  = &httpError{status: http.StatusMethodNotAllowed, code: CodeUnsupportedMethod, detail: "method not supported"}
	errBadTarget  = &httpError{status: http.StatusBadRequest, code: "invalid_request_target", detail: "request target is not a valid origin-form path"}
	errBadTimeout = &httpError{status: http.StatusBadRequest, code: CodeInvalidTimeout, detail: "X-Sandbox-Timeout must be a positive number of seconds"}
	// After a 101 the connection belongs to the new protocol; a body
	// still being sent would interleave with it.
	errUpgradeBody = &httpError{status: http.StatusBadRequest, code: "upgrade_with_body", detail: "upgrade requests must not carry a body"}
)

// noCancel is admit's cancel when the request has no deadline of its own.
func noCancel() {}

// admit checks what the request itself asks for, before any sandbox is
// looked up: a method and a target that an HTTP/1.1 sandbox can take,
// the body limit, and the client's deadline. It returns the request to
// forward (a copy when its body or context is wrapped) and the cancel of
// the deadline, to call when the request ends.
func (rt *Router) admit(w http.ResponseWriter, r *http.Request, rec *record) (*http.Request, context.CancelFunc, error) {
	if r.Method == http.MethodConnect || !httpguts.ValidHeaderFieldName(r.Method) {
		// An HTTP/2 :method is not checked to be a token by net/http; it
		// is written into an HTTP/1.1 request line, so it must be one.
		return r, noCancel, errBadMethod
	}
	if !validTarget(requestTarget(r)) {
		return r, noCancel, errBadTarget
	}
	timeout, hasTimeout, ok := clientTimeout(r.Header, rt.opts.MaxClientTimeout)
	if !ok {
		return r, noCancel, errBadTimeout
	}
	hasBody := r.Body != nil && r.Body != http.NoBody
	if hasBody && r.ContentLength != 0 && r.ProtoMajor == 1 && upgradeType(r.Header) != "" {
		return r, noCancel, errUpgradeBody
	}
	if hasBody {
		// Wrap the body on a copy of the request: after the handler,
		// net/http looks for its own body type on the original to see
		// that an unread rest was given up, and then closes with a delay
		// so that the client reads the answer before a reset.
		r2 := *r
		r = &r2
		if max := rt.opts.MaxRequestBodyBytes; max > 0 {
			if r.ContentLength > max {
				return r, noCancel, errBodyTooLarge
			}
			r.Body = http.MaxBytesReader(w, r.Body, max)
		}
		if r.ContentLength != 0 {
			rec.body = &countingBody{ReadCloser: r.Body}
			r.Body = rec.body
		}
	}
	if !hasTimeout {
		return r, noCancel, nil
	}
	ctx, cancel := context.WithTimeoutCause(r.Context(), timeout, errClientDeadline)
	return r.WithContext(ctx), cancel, nil
}

// clientTimeout reads X-Sandbox-Timeout: decimal seconds, positive, at
// most max (longer asks get max). ok is false for a malformed value.
func clientTimeout(h http.Header, max time.Duration) (d time.Duration, present, ok bool) {
	v := headerValue(h, HeaderSandboxTimeout)
	if v == "" {
		return 0, false, true
	}
	// Digits with at most one dot: no sign, exponent, hex, Inf or NaN,
	// which strconv.ParseFloat would take.
	dots := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '.':
			dots++
		case c < '0' || c > '9':
			return 0, false, false
		}
	}
	if len(v) > 24 || dots > 1 || v[0] == '.' || v[len(v)-1] == '.' {
		return 0, false, false
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || secs <= 0 {
		return 0, false, false
	}
	if secs >= max.Seconds() {
		return max, true, true
	}
	d = time.Duration(secs * float64(time.Second))
	if d <= 0 {
		return 0, false, false // below a nanosecond
	}
	return d, true, true
}

// validTarget rejects request targets with control characters or spaces,
// which an HTTP/2 :path could carry into an HTTP/1.1 request line.
func validTarget(s string) bool {
	if s == "" || (s[0] != '/' && s != "*") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// requestTarget is the origin-form target: the raw request URI when the
// client sent one (no re-encoding, no allocation), else the parsed URL's.
func requestTarget(r *http.Request) string {
	if len(r.RequestURI) > 0 && r.RequestURI[0] == '/' {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// withoutEntryParam removes an entry link's credential from the query once
// Access has read it: it is for the router, and the sandbox gets the
// query without it, the rest byte for byte.
func (rt *Router) withoutEntryParam(r *http.Request) *http.Request {
	p := rt.opts.EntryParam
	if p == "" || !strings.Contains(r.URL.RawQuery, p) {
		return r
	}
	u := *r.URL
	u.RawQuery = access.WithoutParam(u.RawQuery, p)
	r2 := *r
	r2.URL = &u
	if path, _, ok := strings.Cut(r.RequestURI, "?"); ok {
		r2.RequestURI = path
		if u.RawQuery != "" {
			r2.RequestURI += "?" + u.RawQuery
		}
	}
	return &r2
}
