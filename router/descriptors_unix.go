//go:build unix

package router

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// RaiseDescriptorLimit raises the soft RLIMIT_NOFILE to the hard one and
// returns both as they are then. The Go runtime does the same when the
// os package starts; this makes it explicit and reports the result, which
// the connection caps are derived from.
func RaiseDescriptorLimit() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	return uint64(lim.Cur), uint64(lim.Max), nil
}

// connectionWaiting reports whether the listening socket fd has a
// connection to accept, without waiting.
func connectionWaiting(fd uintptr) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(p, 0)
	return err == nil && n == 1 && p[0].Revents&unix.POLLIN != 0
}

// acceptAndClose accepts one waiting connection on the listening socket
// fd without waiting, and closes it at once.
func acceptAndClose(fd uintptr) bool {
	// Closed at once, so no close-on-exec is needed (accept4 is not
	// everywhere).
	nfd, _, err := syscall.Accept(int(fd))
	if err != nil {
		return false
	}
	syscall.Close(nfd)
	return true
}
