//go:build unix

package router

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// readiness waits until a socket has something to read (bytes, an end or
// an error) without reading it, so a tunnel direction can park without a
// buffer.
type readiness struct{ raw syscall.RawConn }

// readinessOf returns a waiter for c, or nil when c cannot be waited on
// without reading (a TLS connection: its records are decrypted only by
// reading them), in which case the caller reads with its buffer.
func readinessOf(c net.Conn) *readiness {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &readiness{raw: raw}
}

// wait returns once the socket is readable; the poller parks the goroutine
// in between. It fails only when the connection was closed.
func (r *readiness) wait() error { return r.raw.Read(readable) }

// readable peeks one byte without blocking. It answers false (park and
// try again when the poller says so) only while there is nothing at all:
// data, an orderly end and an error all make the next Read return at once.
func readable(fd uintptr) bool {
	var b [1]byte
	_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return err != unix.EAGAIN && err != unix.EWOULDBLOCK
}
