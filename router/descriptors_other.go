//go:build !unix

package router

import "errors"

// RaiseDescriptorLimit: no RLIMIT_NOFILE here.
func RaiseDescriptorLimit() (soft, hard uint64, err error) {
	return 0, 0, errors.ErrUnsupported
}

func connectionWaiting(uintptr) bool { return false }

func acceptAndClose(uintptr) bool { return false }
