package activator

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// probePort checks that the pod accepts TCP connections on port. A Ready
// condition is the kubelet's view, written after its own probe; the first
// requests after a resume must not find the port still closed (that was a
// stream of 502s elsewhere), so the activator connects itself before it
// releases them. The connection is closed at once, unused.
func probePort(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), ip netip.Addr, port uint16, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dial(ctx, "tcp", netip.AddrPortFrom(ip, port).String())
	if err != nil {
		return err
	}
	return c.Close()
}
