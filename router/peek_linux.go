//go:build linux && (amd64 || arm64)

package router

import (
	"syscall"
	"unsafe"
)

// peekOne peeks at one byte of a socket without waiting and without
// consuming it: n 0 is an orderly end, an error EAGAIN an open and quiet
// socket. The raw syscall, where recvfrom is one: x/sys's Recvfrom
// allocates the sender's address on every call, and this runs on every
// reuse of a pooled connection and every wake of a tunnel.
func peekOne(fd uintptr, b *[1]byte) (int, error) {
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}
