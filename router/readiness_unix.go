//go:build unix

package router

import (
	"crypto/tls"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// readiness waits until a socket has something to read (bytes, an end or
// an error) without reading it, so a tunnel direction can park without a
// buffer.
type readiness struct {
	raw  syscall.RawConn
	peek func(fd uintptr) bool // made once: no allocation per wait
	err  error                 // what the last peek found wrong
	// buffers: the connection reads ahead of what it returns (TLS reads
	// whole records, and more), so bytes may wait in it while its socket
	// has nothing; the caller drains them after each read (drainBuffered).
	buffers bool
}

// readinessOf returns a waiter for c, or nil when c cannot be waited on
// without reading, in which case the caller reads with its buffer. For a
// TLS connection it waits on the socket under it.
func readinessOf(c net.Conn) *readiness {
	buffers := false
	if tc, ok := c.(*tls.Conn); ok {
		c, buffers = tc.NetConn(), true
	}
	raw := rawConnOf(c)
	if raw == nil {
		return nil
	}
	r := &readiness{raw: raw, buffers: buffers}
	r.peek = r.readable
	return r
}

// wait returns nil once the socket has bytes or its orderly end to read;
// the poller parks the goroutine in between. It returns the socket's
// error (a reset) itself: the peek that finds an error consumes it, so a
// Read after it would find nothing and park for good.
func (r *readiness) wait() error {
	if err := r.raw.Read(r.peek); err != nil {
		return err
	}
	return r.err
}

// readable peeks one byte without blocking. It answers false (park and
// try again when the poller says so) only while there is nothing at all.
func (r *readiness) readable(fd uintptr) bool {
	var b [1]byte
	_, err := peekOne(fd, &b)
	switch err {
	case unix.EAGAIN: // EWOULDBLOCK is the same error here
		return false
	case unix.EINTR:
		err = nil // interrupted before it looked: let the Read find out
	}
	r.err = err
	return true
}
