package access

import "net/http"

// Error is a refused request's answer. It carries what the router needs
// to answer with the error contract (status, code, detail) and, for a
// 401, the WWW-Authenticate challenge.
type Error struct {
	Status     int
	Code       string
	Detail     string
	Challenge  string      // WWW-Authenticate; empty: none
	RetryAfter int         // seconds; 0: none
	Headers    http.Header // more response headers (a session's Location and Set-Cookie)
}

func (e *Error) Error() string           { return e.Detail }
func (e *Error) HTTPStatus() int         { return e.Status }
func (e *Error) ErrorCode() string       { return e.Code }
func (e *Error) RetryAfterSeconds() int  { return e.RetryAfter }
func (e *Error) WWWAuthenticate() string { return e.Challenge }

// ResponseHeaders are set on the answer too.
func (e *Error) ResponseHeaders() http.Header { return e.Headers }

// The error codes of refused requests: part of the API, as the router's.
const (
	CodeMissingCredentials = "missing_credentials"
	CodeInvalidCredentials = "invalid_credentials"
	CodeForbidden          = "sandbox_forbidden"
	CodeUnavailable        = "access_unavailable"
	CodeRateLimited        = "rate_limited"
	CodeSandboxBusy        = "sandbox_busy"
	CodeTooManyFailures    = "too_many_failed_credentials"
	CodeCrossOrigin        = "cross_origin_refused"
	CodeNoSession          = "session_impossible"
	// CodeSessionStarted is no refusal: the 302 of an entry link.
	CodeSessionStarted = "session_started"
)

const realm = `Bearer realm="sandbox-router"`

var (
	errMissingCredentials = &Error{Status: http.StatusUnauthorized, Code: CodeMissingCredentials,
		Detail: "a bearer token is required", Challenge: realm}
	errInvalidCredentials = &Error{Status: http.StatusUnauthorized, Code: CodeInvalidCredentials,
		Detail: "the bearer token is not valid", Challenge: realm + `, error="invalid_token"`}
	errForbidden = &Error{Status: http.StatusForbidden, Code: CodeForbidden,
		Detail: "this identity may not reach this sandbox"}
	errCrossOrigin = &Error{Status: http.StatusForbidden, Code: CodeCrossOrigin,
		Detail: "a cookie-authenticated request that changes state or opens a WebSocket must come from the sandbox's own origin"}
	errNoSession = &Error{Status: http.StatusBadRequest, Code: CodeNoSession,
		Detail: "this token cannot be carried in a cookie (too long or not made of cookie characters): send it as Authorization: Bearer"}
	errUnavailable = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
		Detail: "access could not be checked now", RetryAfter: 1}
)
