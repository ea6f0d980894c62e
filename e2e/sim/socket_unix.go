//go:build unix

package sim

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// listenBacklog is the accept queue asked for; the kernel caps it at
// net.core.somaxconn, as it does for net.Listen.
const listenBacklog = 4096

// portSocket is a TCP socket bound to a pod's address and port but not
// listening yet: it holds the address (see bindPort) while connections
// to it are refused, as they are to a pod whose container has
// not started. listen turns it into a net.Listener.
type portSocket struct {
	addr netip.AddrPort
	fd   int // -1 once handed to a listener or closed
}

// bindPort binds a socket to addr. The error wraps syscall.EADDRINUSE
// when another socket holds it. It binds without SO_REUSEADDR first: with
// it, another process's net.Listen (which sets it) could bind the same
// address next to a socket that does not listen yet, and listen first.
// Only when that fails does it bind with SO_REUSEADDR, as net.Listen
// does, which succeeds where just connections of a stopped backend
// linger in TIME_WAIT (a run a minute ago), and fails where a socket
// listens.
func bindPort(addr netip.AddrPort) (*portSocket, error) {
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	sa := &syscall.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	err = syscall.Bind(fd, sa)
	if err == syscall.EADDRINUSE {
		if err = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err == nil {
			err = syscall.Bind(fd, sa)
		}
	}
	if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", addr, os.NewSyscallError("bind", err))
	}
	return &portSocket{addr: addr, fd: fd}, nil
}

// listen starts accepting on the socket and returns it as a listener;
// the socket itself is spent.
func (s *portSocket) listen() (net.Listener, error) {
	if s.fd < 0 {
		return nil, fmt.Errorf("listen %s: socket closed", s.addr)
	}
	fd := s.fd
	s.fd = -1
	if err := syscall.Listen(fd, listenBacklog); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", s.addr, os.NewSyscallError("listen", err))
	}
	// As net.Listen: the address can be bound again (by bindPort's
	// second try) while connections of this backend linger in TIME_WAIT
	// after it stopped.
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	f := os.NewFile(uintptr(fd), s.addr.String())
	defer f.Close() // FileListener holds a duplicate
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", s.addr, err)
	}
	return l, nil
}

// close releases a socket that never listened.
func (s *portSocket) close() {
	if s.fd >= 0 {
		syscall.Close(s.fd)
		s.fd = -1
	}
}
