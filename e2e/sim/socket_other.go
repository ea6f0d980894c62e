//go:build !unix

package sim

import (
	"net"
	"net/netip"
)

// portSocket stands for a pod's address and port until the backend
// listens. Without the unix socket calls it cannot hold the address: it
// only checks at bind time that the address is free, and listen binds it
// again, which fails if someone took it in between.
type portSocket struct{ addr netip.AddrPort }

func bindPort(addr netip.AddrPort) (*portSocket, error) {
	l, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	l.Close()
	return &portSocket{addr: addr}, nil
}

func (s *portSocket) listen() (net.Listener, error) { return net.Listen("tcp", s.addr.String()) }

func (s *portSocket) close() {}
