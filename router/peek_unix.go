//go:build unix && !(linux && (amd64 || arm64))

package router

import "golang.org/x/sys/unix"

// peekOne peeks at one byte of a socket without waiting and without
// consuming it: n 0 is an orderly end, an error EAGAIN an open and quiet
// socket.
func peekOne(fd uintptr, b *[1]byte) (int, error) {
	n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n, err
}
