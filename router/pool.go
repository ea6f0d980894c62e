package router

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// PoolOptions bound the upstream HTTP/1.1 keep-alive pool.
type PoolOptions struct {
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

// probeAfter is the idle time from which a pooled connection is probed
// for a close by the sandbox before reuse.
const probeAfter = 50 * time.Millisecond

// maxResponseHeaderBytes bounds a sandbox's response head (all 1xx heads
// and the final one together).
const maxResponseHeaderBytes = 1 << 20

var errResponseHeaderTooLarge = errors.New("sandbox response headers too large")

// limitedReader caps what the buffered reader may pull from the
// connection while a response head is read; remaining < 0 means no cap.
type limitedReader struct {
	r         net.Conn
	remaining int64
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
	return n, err
}

// upConn is one HTTP/1.1 connection to a sandbox.
type upConn struct {
	nc        net.Conn
	limit     limitedReader
	br        *bufio.Reader
	bw        *bufio.Writer
	addr      netip.AddrPort
	idleSince time.Time
	alive     livenessProbe
}

// connPool keeps idle keep-alive connections per endpoint (LIFO, so the
// warmest connection is reused and surplus ones age out).
type connPool struct {
	opts   PoolOptions
	dialer net.Dialer

	mu        sync.Mutex
	idle      map[netip.AddrPort][]*upConn
	idleTotal int
	closed    bool
	stop      chan struct{}
}

func newConnPool(opts PoolOptions) *connPool {
	p := &connPool{
		opts:   opts,
		dialer: net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second},
		idle:   make(map[netip.AddrPort][]*upConn),
		stop:   make(chan struct{}),
	}
	go p.janitor()
	return p
}

// get returns an idle connection that is still open, or nil.
func (p *connPool) get(addr netip.AddrPort) *upConn {
	now := time.Now()
	for {
		p.mu.Lock()
		list := p.idle[addr]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		c := list[len(list)-1]
		list[len(list)-1] = nil
		if len(list) == 1 {
			delete(p.idle, addr)
		} else {
			p.idle[addr] = list[:len(list)-1]
		}
		p.idleTotal--
		p.mu.Unlock()
		// A connection the sandbox closed while idle would fail the next
		// request after it may have been sent; check before use. Servers
		// close idle connections after seconds (uvicorn: 5 s), so one
		// parked for less than probeAfter is trusted without the extra
		// system call: under load connections are back in use within
		// microseconds, and idempotent requests are retried anyway.
		idle := now.Sub(c.idleSince)
		if idle < p.opts.IdleTimeout && c.br.Buffered() == 0 && (idle < probeAfter || c.alive.check()) {
			return c
		}
		c.nc.Close()
	}
}

// dial opens a new connection to addr.
func (p *connPool) dial(ctx context.Context, addr netip.AddrPort) (*upConn, error) {
	nc, err := p.dialer.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	c := &upConn{
		nc:    nc,
		limit: limitedReader{r: nc, remaining: -1},
		bw:    bufio.NewWriterSize(nc, 4096),
		addr:  addr,
	}
	c.br = bufio.NewReaderSize(&c.limit, 4096)
	c.alive = newLivenessProbe(nc)
	return c, nil
}

// put returns a healthy connection for reuse, or closes it when the pool
// is full.
func (p *connPool) put(c *upConn) {
	c.idleSince = time.Now()
	p.mu.Lock()
	if p.closed || p.idleTotal >= p.opts.MaxIdleTotal || len(p.idle[c.addr]) >= p.opts.MaxIdlePerEndpoint {
		p.mu.Unlock()
		c.nc.Close()
		return
	}
	p.idle[c.addr] = append(p.idle[c.addr], c)
	p.idleTotal++
	p.mu.Unlock()
}

// janitor closes connections idle past the timeout so that a pool for a
// sandbox that went away does not linger.
func (p *connPool) janitor() {
	interval := p.opts.IdleTimeout / 2
	if interval < time.Second {
		interval = time.Second
	}
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
		for addr, list := range p.idle {
			keep := list[:0]
			for _, c := range list {
				if c.idleSince.Before(cutoff) {
					expired = append(expired, c)
				} else {
					keep = append(keep, c)
				}
			}
			clear(list[len(keep):])
			if len(keep) == 0 {
				delete(p.idle, addr)
			} else {
				p.idle[addr] = keep
			}
		}
		p.idleTotal -= len(expired)
		p.mu.Unlock()
		for _, c := range expired {
			c.nc.Close()
		}
	}
}

// close drops every idle connection and stops the janitor.
func (p *connPool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.idleTotal = 0
	p.mu.Unlock()
	close(p.stop)
	for _, list := range idle {
		for _, c := range list {
			c.nc.Close()
		}
	}
}
