//go:build unix

package sim

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"testing"
)

// TestPortSocket: a bound socket refuses connections and keeps Go's
// listeners off its address until it listens; an address whose backend
// stopped with connections in TIME_WAIT can be bound again, one where a
// socket listens cannot.
func TestPortSocket(t *testing.T) {
	// A port of its own each run: the end of the test leaves the address
	// in TIME_WAIT for a minute, where a bind falls back to SO_REUSEADDR
	// and no longer keeps net.Listen off.
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.15.1"), uint16(20000+rand.IntN(40000)))
	s, err := bindPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr.String()); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial a bound socket: %v, want connection refused", err)
	}
	if l, err := net.Listen("tcp", addr.String()); !isAddrInUse(err) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("net.Listen next to a bound socket: %v, want address in use", err)
	}
	l, err := s.listen()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.listen(); err == nil {
		t.Error("a spent socket listened again")
	}
	s.close() // a no-op once spent

	// The server closes first, so its side lingers in TIME_WAIT.
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := bindPort(addr); !isAddrInUse(err) {
		t.Fatalf("bind next to a listener: %v, want address in use", err)
	}
	l.Close()
	again, err := bindPort(addr)
	if err != nil {
		t.Fatalf("bind after the listener closed: %v", err)
	}
	again.close()
}
