package router

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// tunnel relays bytes both ways between a client and a sandbox after an
// Upgrade (WebSocket or any other protocol). Most tunnels sit idle most
// of their life (a terminal, a notebook kernel), so an idle one holds as
// little as the design allows: its two connections (two descriptors) and
// one goroutine per direction parked in the poller, with no buffer. A
// direction borrows a copy buffer from the pool only while bytes flow.
// No timeout applies: a healthy WebSocket may stay open for days; dead
// peers are found by TCP keep-alive, and a drain closes the rest.
//
// Why not io.Copy between the two sockets: it uses splice(2), which holds
// a pipe pair (two more descriptors) per direction for the tunnel's whole
// life and pools them after, six descriptors per tunnel where two will do.
// Splice saves a user-space copy on bulk transfers; measured here
// (docs/benchmarks.md) the copy through a pooled buffer loses little, and
// tunnels are rarely bulk.
type tunnel struct {
	rt       *Router
	client   net.Conn
	upstream net.Conn
	// req and rec are the request's, finished when the tunnel closes.
	req *http.Request
	rec record

	closing sync.Once
	// running counts the directions still relaying; the last one to stop
	// finishes the tunnel.
	running atomic.Int32
	// in and out are written by one direction each and read once both
	// have stopped.
	in, out int64
}

// openTunnel registers t and starts its two directions, each sending
// first what was read past the handshake (fromClient, fromUpstream).
// During a drain that already closed the tunnels, t is closed at once.
func (rt *Router) openTunnel(t *tunnel, fromClient, fromUpstream []byte) {
	rt.metrics.upgradedOpen.Inc()
	rt.metrics.upgradedTotal.Inc()
	if !rt.trackTunnel(t) {
		t.close()
		t.finish()
		return
	}
	t.running.Store(2)
	go t.relay(t.upstream, t.client, fromClient, &t.in)
	go t.relay(t.client, t.upstream, fromUpstream, &t.out)
}

// relay copies src into dst until src ends. On a clean end it half-closes
// dst, so the peer sees the end of the stream while the other direction
// may go on; on an error it closes the tunnel (both connections), which
// also ends the other direction. Nothing it does touches another tunnel.
func (t *tunnel) relay(dst, src net.Conn, pending []byte, n *int64) {
	defer t.stopped()
	if len(pending) > 0 {
		m, err := dst.Write(pending)
		*n += int64(m)
		if err != nil {
			t.close()
			return
		}
	}
	ready := readinessOf(src)
	for {
		if ready != nil {
			// Park without a buffer until src has bytes, an end or an
			// error to report; the Read below then does not block.
			if err := ready.wait(); err != nil {
				t.close()
				return
			}
		}
		m, rerr, werr := passOnce(dst, src)
		*n += int64(m)
		if werr == nil && rerr == nil && ready != nil && ready.buffers {
			werr, rerr = drainBuffered(dst, src, n)
		}
		switch {
		case werr != nil:
			t.close()
			return
		case rerr == io.EOF:
			if cw, ok := dst.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
				t.close()
			}
			return
		case rerr != nil:
			t.close()
			return
		}
	}
}

// drainBuffered relays what src holds already read from its socket (TLS
// records read ahead), which no readiness wait would see. Reads with a
// deadline in the past return such bytes and time out at once when there
// are none; crypto/tls keeps a partial record across the timeout, and
// the rest of it arrives on the socket, which the wait sees.
func drainBuffered(dst, src net.Conn, n *int64) (werr, rerr error) {
	defer src.SetReadDeadline(time.Time{})
	for {
		_ = src.SetReadDeadline(aLongTimeAgo)
		m, rerr, werr := passOnce(dst, src)
		*n += int64(m)
		switch {
		case werr != nil:
			return werr, nil
		case rerr != nil && isTimeout(rerr):
			return nil, nil
		case rerr != nil:
			return nil, rerr
		}
	}
}

// stopped is each direction's last act; the second one finishes the tunnel.
func (t *tunnel) stopped() {
	if t.running.Add(-1) == 0 {
		t.close()
		t.rt.untrackTunnel(t)
		t.finish()
	}
}

func (t *tunnel) close() {
	t.closing.Do(func() {
		t.client.Close()
		t.upstream.Close()
	})
}

// finish ends the request the tunnel carried: its place under the tunnel
// cap, the gauge, then the bookkeeping the handler left to the tunnel
// (activity, access release, metrics, span, access log).
func (t *tunnel) finish() {
	rt := t.rt
	rt.limits.tunnels.release()
	rt.metrics.upgradedOpen.Dec()
	t.rec.bytesIn, t.rec.bytesOut = t.in, t.out
	rt.finishRecord(t.req, &t.rec)
}

func (rt *Router) trackTunnel(t *tunnel) bool {
	rt.tunnelsMu.Lock()
	defer rt.tunnelsMu.Unlock()
	if rt.tunnels == nil {
		return false
	}
	rt.tunnels[t] = struct{}{}
	return true
}

func (rt *Router) untrackTunnel(t *tunnel) {
	rt.tunnelsMu.Lock()
	defer rt.tunnelsMu.Unlock()
	delete(rt.tunnels, t)
}

// CloseUpgraded closes every tunnel and refuses new ones; it returns how
// many it closed. The server calls it at the very end of a drain, after
// the requests in flight.
func (rt *Router) CloseUpgraded() int {
	rt.tunnelsMu.Lock()
	open := rt.tunnels
	rt.tunnels = nil
	rt.tunnelsMu.Unlock()
	for t := range open {
		t.close()
	}
	return len(open)
}
