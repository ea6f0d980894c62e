package mcp

import "errors"

// What a tool's Kubernetes call can fail with, as the tools tell the model
// (mcp/kube wraps the API server's answers in these, with its message).
var (
	// ErrForbidden: the API server refused the caller (RBAC).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: no such object (or one the caller may not see).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the object exists already, or changed meanwhile.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the API server refused the object as malformed.
	ErrInvalid = errors.New("invalid")
	// ErrUnavailable: the API server could not be asked now.
	ErrUnavailable = errors.New("unavailable")
)
