package router

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"
)

// The connection budget. Every client connection, tunnel and connection
// to a sandbox costs a file descriptor; a router that runs out cannot
// accept, dial, answer /metrics or reach the API server, and its clients
// time out instead of hearing "no". So the router counts what it holds
// under caps set below the process's descriptor limit (cmd derives them,
// leaving a reserve for the admin listener, the API server and files),
// and past a cap it refuses new work at once while what is established
// goes on.

// Errors of a request refused at a cap.
var (
	errUpstreamLimit   = errors.New("the router is at its limit of connections to sandboxes")
	upstreamLimitError = &httpError{status: http.StatusServiceUnavailable, code: CodeUpstreamLimit,
		detail: "the router is at its limit of connections to sandboxes", retryAfter: 1}
	tunnelLimitError = &httpError{status: http.StatusServiceUnavailable, code: CodeTunnelLimit,
		detail: "the router is at its limit of open tunnels", retryAfter: 1}
)

// slots counts what is held against a cap; max 0 means no cap.
type slots struct {
	max int64
	n   atomic.Int64
}

func (s *slots) acquire() bool {
	if s.n.Add(1) > s.max && s.max > 0 {
		s.n.Add(-1)
		return false
	}
	return true
}

func (s *slots) release() { s.n.Add(-1) }

// limits are the router's own caps; the client-connection cap is the
// server's (limitedListener).
type limits struct {
	tunnels  slots
	upstream slots
}

// countedConn holds one place under a cap until it is closed, however
// many times and by whom. It keeps what the router needs of the socket
// under it visible: the raw descriptor (the tunnel's readiness wait, the
// pool's liveness peek) and the half-close.
type countedConn struct {
	net.Conn
	released atomic.Bool
	release  func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	if !c.released.Swap(true) {
		c.release()
	}
	return err
}

func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// rawConnOf returns the raw descriptor of a socket (a connection or a
// listener), or nil when it has none to give: what the tunnel's readiness
// wait, the pool's liveness peek and the spare's shedding work on.
func rawConnOf(x any) syscall.RawConn {
	sc, ok := x.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// isDescriptorExhaustion reports whether err is the process (EMFILE) or
// the system (ENFILE) out of file descriptors.
func isDescriptorExhaustion(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// budgetWarnings are the connection budget's warnings, one per event, so
// that one that repeats cannot hide another.
type budgetWarnings struct {
	clientCap, tunnelCap, upstreamCap, acceptExhausted, dialExhausted rareWarning
}

func newBudgetWarnings(every time.Duration) *budgetWarnings {
	w := &budgetWarnings{}
	for _, r := range []*rareWarning{&w.clientCap, &w.tunnelCap, &w.upstreamCap, &w.acceptExhausted, &w.dialExhausted} {
		r.every = every
	}
	return w
}

// rareWarning logs at most once per interval and says how many it held
// back: at a limit the same event repeats thousands of times a second.
type rareWarning struct {
	every time.Duration
	next  atomic.Int64 // unix nanoseconds before which nothing is logged
	held  atomic.Int64
}

func (w *rareWarning) log(l *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	next := w.next.Load()
	if now < next || !w.next.CompareAndSwap(next, now+int64(w.every)) {
		w.held.Add(1)
		return
	}
	l.Warn(msg, append(args, "suppressed_since_last", w.held.Swap(0))...)
}

// dialUpstream opens a connection to a sandbox under the upstream cap.
// At the cap it first closes one idle pooled connection, which frees a
// place if there is one; else it fails with errUpstreamLimit.
func (rt *Router) dialUpstream(ctx context.Context, addr string) (net.Conn, error) {
	if !rt.limits.upstream.acquire() {
		if !rt.pool.closeOneIdle() || !rt.limits.upstream.acquire() {
			rt.metrics.refused("upstream_limit")
			rt.warnings.upstreamCap.log(rt.log, "at the upstream connection limit: refusing requests that need a new connection",
				"limit", rt.limits.upstream.max)
			return nil, errUpstreamLimit
		}
	}
	nc, err := rt.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		rt.limits.upstream.release()
		if isDescriptorExhaustion(err) {
			rt.metrics.descriptorError("dial")
			rt.warnings.dialExhausted.log(rt.log, "out of file descriptors dialing a sandbox", "err", err)
		}
		return nil, err
	}
	rt.metrics.upstreamOpen.Inc()
	return &countedConn{Conn: nc, release: rt.releaseUpstream}, nil
}

func (rt *Router) releaseUpstream() {
	rt.limits.upstream.release()
	rt.metrics.upstreamOpen.Dec()
}
