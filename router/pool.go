package router

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// PoolOptions bound the upstream HTTP/1.1 connections.
type PoolOptions struct {
	// MaxConnsPerEndpoint caps the connections open to one pod address:
	// idle, in use and being dialed (default 256). A request that finds
	// the endpoint at its cap waits for a connection to come back;
	// without the cap, an HTTP/2 client with 250 streams to an HTTP/1.1
	// sandbox fans out into 250 connections to one pod. Upgraded
	// connections (WebSocket) leave the pool and do not count.
	MaxConnsPerEndpoint int
	// MaxWaitersPerEndpoint caps the requests waiting for a connection to
	// one endpoint (default 1024); more are answered 503 at once.
	MaxWaitersPerEndpoint int
	// ConnWaitTimeout bounds one request's wait for a connection at the
	// cap (default 5s); the request's own deadline bounds it too. When it
	// passes the request is answered 503 with Retry-After.
	ConnWaitTimeout time.Duration
	// MaxIdlePerEndpoint caps idle connections kept for one pod address.
	MaxIdlePerEndpoint int
	// MaxIdleTotal caps idle connections across all endpoints, so that
	// thousands of sandboxes cannot make the pool grow without bound.
	MaxIdleTotal int
	// IdleTimeout closes connections unused for this long. Keep it below
	// the sandbox servers' own keep-alive timeout where it is known.
	IdleTimeout time.Duration
	// DialTimeout bounds one TCP connect.
	DialTimeout time.Duration
}

// The defaults of PoolOptions.
const (
	DefaultMaxConnsPerEndpoint   = 256
	DefaultMaxWaitersPerEndpoint = 1024
	DefaultConnWaitTimeout       = 5 * time.Second
)

func (o *PoolOptions) setDefaults() {
	if o.MaxConnsPerEndpoint <= 0 {
		o.MaxConnsPerEndpoint = DefaultMaxConnsPerEndpoint
	}
	if o.MaxWaitersPerEndpoint <= 0 {
		o.MaxWaitersPerEndpoint = DefaultMaxWaitersPerEndpoint
	}
	if o.ConnWaitTimeout <= 0 {
		o.ConnWaitTimeout = DefaultConnWaitTimeout
	}
	if o.MaxIdlePerEndpoint <= 0 {
		o.MaxIdlePerEndpoint = 64
	}
	o.MaxIdlePerEndpoint = min(o.MaxIdlePerEndpoint, o.MaxConnsPerEndpoint)
	if o.MaxIdleTotal <= 0 {
		o.MaxIdleTotal = 10000
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 3 * time.Second
	}
}

// maxResponseHeaderBytes bounds a sandbox's response head (all 1xx heads
// and the final one together).
const maxResponseHeaderBytes = 1 << 20

var errResponseHeaderTooLarge = errors.New("sandbox response headers too large")

// Errors of a request that found its endpoint at the connection cap.
var (
	errConnQueueFull   = errors.New("too many requests waiting for a connection to the sandbox")
	errConnWaitTimeout = errors.New("no connection to the sandbox became free in time")
)

// limitedReader caps what the buffered reader may pull from the
// connection while a response head is read (remaining < 0: no cap), and
// keeps what it pulled in head, so that the head's Connection header can
// be read again after net/http has parsed (and edited) it.
type limitedReader struct {
	r         net.Conn
	remaining int64
	head      *[]byte // non-nil while a head is read
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.remaining < 0 {
		return l.r.Read(p)
	}
	if l.remaining == 0 {
		return 0, errResponseHeaderTooLarge
	}
	if int64(len(p)) > l.remaining {
		p = p[:l.remaining]
	}
	n, err := l.r.Read(p)
	l.remaining -= int64(n)
	if l.head != nil {
		*l.head = append(*l.head, p[:n]...)
	}
	return n, err
}

// upConn is one HTTP/1.1 connection to a sandbox. It holds a place under
// its endpoint's cap from its dial until discard or detach.
type upConn struct {
	pool      *connPool
	nc        net.Conn
	limit     limitedReader
	br        *bufio.Reader
	bw        *bufio.Writer // only while a request is written: writer, releaseWriter
	addr      netip.AddrPort
	idleSince time.Time
	alive     livenessProbe
	gone      atomic.Bool // discarded or detached: its place is free
}

// discard closes the connection and frees its place under the cap. It may
// be called more than once, from any goroutine.
func (c *upConn) discard() {
	c.nc.Close()
	c.detach()
}

// detach takes the connection out of the pool's accounting without
// closing it: an upgraded connection belongs to its tunnel from then on.
func (c *upConn) detach() {
	if !c.gone.Swap(true) {
		c.pool.metrics.upstreamConns.Dec()
		c.pool.releasePlace(c.addr)
	}
}

// replace closes the connection and keeps its place for the new
// connection the caller dials next.
func (c *upConn) replace() {
	c.nc.Close()
	if !c.gone.Swap(true) {
		c.pool.metrics.upstreamConns.Dec()
	}
}

// endpoint is the pool's state for one pod address.
type endpoint struct {
	idle []*upConn // LIFO: the warmest connection is reused, surplus ones age out
	// open counts connections holding a place: idle, in use, being dialed.
	open int
	// waiters are requests waiting for a place, oldest first.
	waiters []chan *upConn
}

// connPool keeps HTTP/1.1 keep-alive connections per endpoint under a cap
// per endpoint. Its only goroutine is the janitor: an idle connection
// costs a file descriptor and two buffers, nothing more.
type connPool struct {
	opts    PoolOptions
	dialer  func(ctx context.Context, addr string) (net.Conn, error)
	metrics *Metrics

	mu        sync.Mutex
	endpoints map[netip.AddrPort]*endpoint
	idleTotal int
	closed    bool
	stop      chan struct{}
}

// dial opens connections: the router's, under its upstream cap.
func newConnPool(opts PoolOptions, m *Metrics, dial func(ctx context.Context, addr string) (net.Conn, error)) *connPool {
	opts.setDefaults()
	p := &connPool{
		opts:      opts,
		dialer:    dial,
		metrics:   m,
		endpoints: make(map[netip.AddrPort]*endpoint),
		stop:      make(chan struct{}),
	}
	go p.janitor()
	return p
}

// acquire returns a connection to addr: an idle one that is still sound
// (reused true), else a new one when the endpoint is under its cap, else
// whichever comes first of a connection handed back and a freed place,
// waiting no longer than ConnWaitTimeout and ctx. fresh asks for a new
// connection (the retry after a stale one). A dial failure is returned
// as a *net.OpError from the dialer; a full queue or a wait that timed
// out as errConnQueueFull or errConnWaitTimeout.
func (p *connPool) acquire(ctx context.Context, addr netip.AddrPort, fresh bool) (c *upConn, reused bool, err error) {
	p.mu.Lock()
	ep := p.endpoints[addr]
	if ep == nil {
		ep = &endpoint{}
		p.endpoints[addr] = ep
	}
	for !fresh && len(ep.idle) > 0 {
		c = ep.popIdle()
		p.idleTotal--
		p.mu.Unlock()
		if c.sound() {
			return c, true, nil
		}
		c.discard()
		p.mu.Lock()
		if ep = p.endpoints[addr]; ep == nil {
			ep = &endpoint{}
			p.endpoints[addr] = ep
		}
	}
	if ep.open < p.opts.MaxConnsPerEndpoint {
		ep.open++
		p.mu.Unlock()
		c, err = p.dial(ctx, addr)
		return c, false, err
	}
	if fresh && len(ep.idle) > 0 {
		// At the cap with idle connections the retry must not use:
		// close the oldest and dial in its place.
		old := ep.idle[0]
		ep.idle = append(ep.idle[:0], ep.idle[1:]...)
		p.idleTotal--
		p.mu.Unlock()
		old.replace()
		c, err = p.dial(ctx, addr)
		return c, false, err
	}
	if len(ep.waiters) >= p.opts.MaxWaitersPerEndpoint {
		p.mu.Unlock()
		p.metrics.connOverflow("queue_full")
		return nil, false, errConnQueueFull
	}
	ch := make(chan *upConn, 1)
	ep.waiters = append(ep.waiters, ch)
	p.mu.Unlock()
	return p.wait(ctx, addr, ch, fresh)
}

// wait is acquire's slow path: ch receives a connection handed back (or
// nil, a place to dial with).
func (p *connPool) wait(ctx context.Context, addr netip.AddrPort, ch chan *upConn, fresh bool) (*upConn, bool, error) {
	p.metrics.connWaits.Inc()
	start := time.Now()
	timer := time.NewTimer(p.opts.ConnWaitTimeout)
	defer timer.Stop()
	var err error
	select {
	case c := <-ch:
		p.metrics.connWaitSeconds.Observe(time.Since(start).Seconds())
		return p.take(ctx, addr, c, fresh)
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = errConnWaitTimeout
		p.metrics.connOverflow("timeout")
	}
	p.mu.Lock()
	removed := false
	if ep := p.endpoints[addr]; ep != nil {
		for i, w := range ep.waiters {
			if w == ch {
				ep.waiters = append(ep.waiters[:i], ep.waiters[i+1:]...)
				removed = true
				break
			}
		}
	}
	p.mu.Unlock()
	if !removed {
		// A connection or a place was handed over as the wait ended:
		// pass it on rather than lose it.
		if c := <-ch; c != nil {
			p.put(c)
		} else {
			p.releasePlace(addr)
		}
	}
	return nil, false, err
}

// take turns what a waiter received into a connection.
func (p *connPool) take(ctx context.Context, addr netip.AddrPort, c *upConn, fresh bool) (*upConn, bool, error) {
	if c != nil && !fresh && c.sound() {
		return c, true, nil
	}
	if c != nil {
		c.replace()
	}
	c, err := p.dial(ctx, addr)
	return c, false, err
}

// dial opens a new connection to addr in a place already counted; a
// failed dial frees it.
func (p *connPool) dial(ctx context.Context, addr netip.AddrPort) (*upConn, error) {
	nc, err := p.dialer(ctx, addr.String())
	if err != nil {
		p.releasePlace(addr)
		return nil, err
	}
	p.metrics.upstreamConns.Inc()
	c := &upConn{
		pool:  p,
		nc:    nc,
		limit: limitedReader{r: nc, remaining: -1},
		addr:  addr,
	}
	c.br = bufio.NewReaderSize(&c.limit, 4096)
	c.alive = newLivenessProbe(nc)
	return c, nil
}

// upstreamWriters are the buffered writers of requests to sandboxes. A
// connection holds one only while it writes a request, so the thousands
// that sit idle in the pool, or under an open stream or tunnel, hold none.
var upstreamWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

// writer is the connection's request writer, taken from the pool when it
// has none.
func (c *upConn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = upstreamWriters.Get().(*bufio.Writer)
		c.bw.Reset(c.nc)
	}
	return c.bw
}

// releaseWriter gives the writer back once the request is written (or
// failed); whatever it still held is dropped with it.
func (c *upConn) releaseWriter() {
	if c.bw != nil {
		c.bw.Reset(nil)
		upstreamWriters.Put(c.bw)
		c.bw = nil
	}
}

// sound reports whether a connection that sat idle may carry a request:
// open, within the idle timeout, and with nothing unread. Bytes a sandbox
// sent after a complete response (a second response, a stray body) would
// otherwise be read as the answer to the next request; a mature HTTP
// client drops such a connection, and so does the router. The check is one
// non-blocking peek, every time: a stray byte sent a millisecond after the
// response must be seen as surely as one sent with it.
func (c *upConn) sound() bool {
	return time.Since(c.idleSince) < c.pool.opts.IdleTimeout && c.br.Buffered() == 0 && c.alive.check()
}

// put returns a connection whose exchange ended cleanly: to the oldest
// waiter first, else to the idle list, else it is closed.
func (p *connPool) put(c *upConn) {
	if c.br.Buffered() > 0 {
		// The sandbox sent more than the response it was asked for.
		c.discard()
		return
	}
	c.idleSince = time.Now()
	p.mu.Lock()
	ep := p.endpoints[c.addr]
	if ep == nil || c.gone.Load() {
		p.mu.Unlock()
		c.discard()
		return
	}
	if len(ep.waiters) > 0 {
		ch := ep.waiters[0]
		ep.waiters = append(ep.waiters[:0], ep.waiters[1:]...)
		p.mu.Unlock()
		ch <- c
		return
	}
	if p.closed || p.idleTotal >= p.opts.MaxIdleTotal || len(ep.idle) >= p.opts.MaxIdlePerEndpoint {
		p.mu.Unlock()
		c.discard()
		return
	}
	ep.idle = append(ep.idle, c)
	p.idleTotal++
	p.mu.Unlock()
}

// releasePlace frees one place under addr's cap: to the oldest waiter,
// which dials with it, or back to the endpoint.
func (p *connPool) releasePlace(addr netip.AddrPort) {
	p.mu.Lock()
	ep := p.endpoints[addr]
	if ep == nil {
		p.mu.Unlock()
		return
	}
	if len(ep.waiters) > 0 {
		ch := ep.waiters[0]
		ep.waiters = append(ep.waiters[:0], ep.waiters[1:]...)
		p.mu.Unlock()
		ch <- nil
		return
	}
	ep.open--
	if ep.open <= 0 && len(ep.idle) == 0 {
		// Forget the endpoints of sandboxes that went away.
		delete(p.endpoints, addr)
	}
	p.mu.Unlock()
}

func (ep *endpoint) popIdle() *upConn {
	c := ep.idle[len(ep.idle)-1]
	ep.idle[len(ep.idle)-1] = nil
	ep.idle = ep.idle[:len(ep.idle)-1]
	return c
}

// janitor closes connections idle past the timeout so that a pool for a
// sandbox that went away does not linger.
func (p *connPool) janitor() {
	interval := max(p.opts.IdleTimeout/2, time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-p.opts.IdleTimeout)
		var expired []*upConn
		p.mu.Lock()
		for _, ep := range p.endpoints {
			keep := ep.idle[:0]
			for _, c := range ep.idle {
				if c.idleSince.Before(cutoff) {
					expired = append(expired, c)
				} else {
					keep = append(keep, c)
				}
			}
			clear(ep.idle[len(keep):])
			ep.idle = keep
		}
		p.idleTotal -= len(expired)
		p.mu.Unlock()
		for _, c := range expired {
			c.discard()
		}
	}
}

// close drops every idle connection and stops the janitor; connections in
// use are closed by their exchanges.
func (p *connPool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	var idle []*upConn
	for _, ep := range p.endpoints {
		idle = append(idle, ep.idle...)
		ep.idle = nil
	}
	p.idleTotal = 0
	p.mu.Unlock()
	close(p.stop)
	for _, c := range idle {
		c.discard()
	}
}

// closeOneIdle closes the oldest idle connection of some endpoint, to make
// room under the router's upstream cap. It reports whether there was one.
// It scans the endpoints, which happens only at the cap.
func (p *connPool) closeOneIdle() bool {
	p.mu.Lock()
	var victim *upConn
	for _, ep := range p.endpoints {
		if n := len(ep.idle); n > 0 {
			victim = ep.idle[0]
			copy(ep.idle, ep.idle[1:])
			ep.idle[n-1] = nil
			ep.idle = ep.idle[:n-1]
			p.idleTotal--
			break
		}
	}
	p.mu.Unlock()
	if victim == nil {
		return false
	}
	victim.discard()
	return true
}
