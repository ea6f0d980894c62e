package activator

import (
	"errors"
	"net/http"
)

// Error codes of held requests that could not be served. They extend the
// router's error contract (DESIGN.md): clients may switch on them.
const (
	CodeHoldQueueFull   = "hold_queue_full"
	CodeResumeTimeout   = "resume_timeout"
	CodeResumeFailed    = "resume_failed"
	CodeSandboxDeleted  = "sandbox_deleted"
	CodeSandboxFinished = "sandbox_finished"
)

// Error is a held request's failure, with the status and code the router
// answers. Details are fixed strings: nothing internal reaches a client.
type Error struct {
	Status     int
	Code       string
	Detail     string
	RetryAfter int // seconds; 0: no Retry-After
}

func (e *Error) Error() string          { return e.Detail }
func (e *Error) HTTPStatus() int        { return e.Status }
func (e *Error) ErrorCode() string      { return e.Code }
func (e *Error) RetryAfterSeconds() int { return e.RetryAfter }

var (
	errSandboxFull  = &Error{Status: http.StatusServiceUnavailable, Code: CodeHoldQueueFull, Detail: "too many requests are waiting for this sandbox to resume", RetryAfter: 1}
	errTotalFull    = &Error{Status: http.StatusServiceUnavailable, Code: CodeHoldQueueFull, Detail: "too many requests are waiting for sandboxes to resume", RetryAfter: 1}
	errTimeout      = &Error{Status: http.StatusGatewayTimeout, Code: CodeResumeTimeout, Detail: "sandbox did not become ready in time"}
	errDeleted      = &Error{Status: http.StatusNotFound, Code: CodeSandboxDeleted, Detail: "sandbox was deleted while the request waited for it"}
	errFinished     = &Error{Status: http.StatusGone, Code: CodeSandboxFinished, Detail: "sandbox has finished"}
	errTooManyPorts = &Error{Status: http.StatusServiceUnavailable, Code: CodeHoldQueueFull, Detail: "too many ports are waited for on this sandbox", RetryAfter: 1}
	// The router's own code for a starting sandbox it does not hold for.
	errWarmStarting = &Error{Status: http.StatusServiceUnavailable, Code: "sandbox_starting", Detail: "sandbox is starting", RetryAfter: 1}
	errRefused      = &Error{Status: http.StatusServiceUnavailable, Code: CodeResumeFailed, Detail: "the router could not resume the sandbox", RetryAfter: 5}
)

// Errors a Waker wraps so the activator can tell what went wrong. Any
// other error is taken as transient and retried.
var (
	// ErrConflict: the sandbox changed since the revision the caller saw.
	ErrConflict = errors.New("sandbox changed since it was read")
	// ErrForbidden: the router is not allowed to change the sandbox.
	ErrForbidden = errors.New("not allowed to change the sandbox")
	// ErrNotFound: the sandbox no longer exists.
	ErrNotFound = errors.New("sandbox not found")
	// ErrInvalid: the API server rejected the change as invalid.
	ErrInvalid = errors.New("change rejected as invalid")
)

// permanent reports whether retrying err cannot help.
func permanent(err error) bool {
	return errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid)
}

// resultLabel names err for metrics.
func resultLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrForbidden):
		return "forbidden"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	}
	return "error"
}
