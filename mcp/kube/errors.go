package kube

import (
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/sandbox-router/sandbox-router/mcp"
)

// classify maps an error of an API call onto the sentinel errors of
// package mcp, with the API server's message:
//
//   - 401, 403: ErrForbidden;
//   - 404: ErrNotFound;
//   - 409 (already exists, conflict, a failed precondition): ErrConflict;
//   - 400, 422 and the other 4xx: ErrInvalid;
//   - 429, 5xx, timeouts, and errors without an answer of the API server
//     (connection refused, TLS, a canceled or expired context):
//     ErrUnavailable, which then wraps the error too.
//
// Nothing in it comes from the request's headers, so the token is never
// in it.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return fmt.Errorf("%w: %w", mcp.ErrUnavailable, err)
	}
	st := status.Status()
	msg := st.Message
	if msg == "" {
		msg = string(st.Reason)
	}
	if msg == "" {
		msg = http.StatusText(int(st.Code))
	}
	var kind error
	switch {
	case apierrors.IsUnauthorized(err), apierrors.IsForbidden(err):
		kind = mcp.ErrForbidden
	case apierrors.IsNotFound(err):
		kind = mcp.ErrNotFound
	case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
		kind = mcp.ErrConflict
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		kind = mcp.ErrInvalid
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err), apierrors.IsUnexpectedServerError(err),
		st.Code >= 500:
		kind = mcp.ErrUnavailable
	case st.Code >= 400:
		kind = mcp.ErrInvalid
	default:
		kind = mcp.ErrUnavailable
	}
	return fmt.Errorf("%w: %s", kind, msg)
}
