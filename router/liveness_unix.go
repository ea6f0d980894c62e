//go:build unix

package router

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// livenessProbe peeks at an idle connection without consuming data: a
// sandbox that closed its end shows up as EOF, which lets the pool drop the
// connection before a request is written into it.
type livenessProbe struct {
	raw  syscall.RawConn
	buf  [1]byte
	ok   bool
	peek func(fd uintptr) bool // built once per connection: no allocation per check
}

func newLivenessProbe(nc net.Conn) livenessProbe {
	return livenessProbe{raw: rawConnOf(nc)}
}

// check reports whether the connection is open with nothing unread.
func (l *livenessProbe) check() bool {
	if l.raw == nil {
		return true
	}
	if l.peek == nil {
		l.peek = func(fd uintptr) bool {
			n, err := peekOne(fd, &l.buf)
			// EAGAIN: open and quiet. n == 0: orderly close. n > 0: the
			// server sent bytes nobody asked for; do not trust the stream.
			l.ok = n < 0 && (err == unix.EAGAIN || err == unix.EWOULDBLOCK)
			return true
		}
	}
	if err := l.raw.Read(l.peek); err != nil {
		return false
	}
	return l.ok
}
