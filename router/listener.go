package router

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// limitedListener caps the client connections of the data listeners
// (shared between them) and refuses the ones past the cap at once: over
// cleartext with a 503 and code connection_limit, over TLS by closing
// the connection (an answer would need a handshake). When the process is
// out of descriptors anyway it sheds waiting connections with a spare
// descriptor, so clients are refused, not left to time out.
type limitedListener struct {
	net.Listener
	open     *slots
	refuse   func(net.Conn)
	spare    *spareDescriptor
	metrics  *Metrics
	log      *slog.Logger
	warnings *budgetWarnings
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if isDescriptorExhaustion(err) {
				l.metrics.descriptorError("accept")
				l.warnings.acceptExhausted.log(l.log, "out of file descriptors accepting a client connection", "err", err)
				if l.spare.shed(l.Listener) {
					continue
				}
			}
			return nil, err
		}
		if !l.open.acquire() {
			l.metrics.refused("client_limit")
			l.warnings.clientCap.log(l.log, "at the client connection limit: refusing new connections", "limit", l.open.max)
			l.refuse(c)
			continue
		}
		l.metrics.clientConns.Inc()
		return &countedConn{Conn: c, release: l.release}, nil
	}
}

func (l *limitedListener) release() {
	l.open.release()
	l.metrics.clientConns.Dec()
}

// connectionLimitResponse is the whole answer to a cleartext connection
// past the cap, written once its request head is read.
var connectionLimitResponse = func() []byte {
	body := `{"detail":"the router is at its limit of client connections","code":"` + CodeConnectionLimit + `"}` + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: application/json\r\nCache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// refusals bounds the refused connections being closed gracefully.
type refusals struct{ slots chan struct{} }

func newRefusals(n int) *refusals { return &refusals{slots: make(chan struct{}, n)} }

// refuseCleartext answers 503 and closes, in a bounded number of
// goroutines; past that bound the connection is closed at once. The
// request head is read first (briefly, and bounded): clients take an
// answer that comes before their request for a broken connection. The
// write side is then closed before the rest is drained, because closing
// a socket with unread bytes sends a reset that can destroy the answer
// before the client reads it.
func (rf *refusals) refuseCleartext(c net.Conn) {
	select {
	case rf.slots <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-rf.slots }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if !skipRequestHead(c) {
			return
		}
		if _, err := c.Write(connectionLimitResponse); err != nil {
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		var b [512]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				return
			}
		}
	}()
}

// maxRefusedHead bounds what is read of a refused connection's request.
const maxRefusedHead = 16 << 10

// skipRequestHead reads up to the blank line that ends a request head. It
// reports false when the connection failed or ended first; a head larger
// than maxRefusedHead is answered anyway.
func skipRequestHead(c net.Conn) bool {
	var b [1024]byte
	var tail uint32 // the last four bytes read
	for read := 0; read < maxRefusedHead; {
		n, err := c.Read(b[:])
		for _, x := range b[:n] {
			tail = tail<<8 | uint32(x)
			if tail == 0x0d0a0d0a { // \r\n\r\n
				return true
			}
		}
		read += n
		if err != nil {
			return false
		}
	}
	return true
}

func refuseClose(c net.Conn) { c.Close() }

// spareDescriptor is one descriptor kept open to be given up when the
// process runs out: closing it lets one waiting connection be accepted
// and closed at once.
type spareDescriptor struct {
	mu   sync.Mutex
	file *os.File // nil: none (it could not be reopened)
}

func newSpareDescriptor() *spareDescriptor {
	s := &spareDescriptor{}
	s.reopen()
	return s
}

func (s *spareDescriptor) reopen() {
	f, err := os.Open(os.DevNull)
	if err != nil {
		f = nil
	}
	s.file = f
}

func (s *spareDescriptor) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

// shed accepts and closes one waiting connection with the spare
// descriptor. It reports whether it shed one: false when none waits (at
// the limit accept fails whether or not a connection waits, so the spare
// is given up only when one does) or when there is no spare (something
// else took the descriptor between its close and its reopening, and none
// has been freed since). Nothing here waits: a spare freed while waiting
// would go to whatever else the process opens first. It is a last resort
// for a misconfigured budget; the caps and the reserve keep the process
// from getting here.
func (s *spareDescriptor) shed(ln net.Listener) bool {
	raw := rawConnOf(ln)
	if raw == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file == nil {
		if s.reopen(); s.file == nil {
			return false
		}
	}
	shed := false
	_ = raw.Control(func(fd uintptr) {
		if !connectionWaiting(fd) {
			return
		}
		s.file.Close()
		shed = acceptAndClose(fd)
		s.reopen()
	})
	return shed
}
