package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2conn is the client side of one HTTP/2 connection with prior knowledge
// (RFC 9113 §3.3): no upgrade, the preface straight away.
type h2conn struct {
	fr *http2.Framer
	// The framer writes into wbuf; flush sends what it holds in one write,
	// so that the preface, SETTINGS and HEADERS leave in one segment.
	wbuf bytes.Buffer
}

func (h *h2conn) flush(conn net.Conn) error {
	_, err := conn.Write(h.wbuf.Bytes())
	h.wbuf.Reset()
	return err
}

// openH2C sends the client preface, SETTINGS and one GET on stream 1, and
// reads until that stream's END_STREAM: a 200 means the request went through
// the proxy to the origin and back. The server's SETTINGS are acknowledged
// and its PINGs answered on the way; a GOAWAY or a RST_STREAM fails it.
// Afterwards the connection carries no stream and nothing is sent on it
// until the close.
func (e *endpoint) openH2C(t *tunnel) error {
	h := &h2conn{}
	h.fr = http2.NewFramer(&h.wbuf, t.br)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil) // HEADERS+CONTINUATION arrive decoded
	h.fr.MaxHeaderListSize = 64 << 10
	t.h2 = h

	h.wbuf.WriteString(http2.ClientPreface)
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0}); err != nil {
		return fmt.Errorf("h2c: %w", err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "GET"},
		{Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: e.host},
		{Name: ":path", Value: e.path},
	}
	for _, l := range e.headers {
		k, v, _ := strings.Cut(l, ":")
		// HTTP/2 field names are lower case (RFC 9113 §8.2.1).
		fields = append(fields, hpack.HeaderField{Name: strings.ToLower(strings.TrimSpace(k)), Value: strings.TrimSpace(v)})
	}
	for _, f := range fields {
		if err := enc.WriteField(f); err != nil {
			return fmt.Errorf("h2c: %w", err)
		}
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true,
	}); err != nil {
		return fmt.Errorf("h2c: %w", err)
	}
	if err := h.flush(t.conn); err != nil {
		return fmt.Errorf("h2c: %w", err)
	}

	status := "" // the final (non-1xx) :status of stream 1
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return fmt.Errorf("h2c: %w", err)
		}
		ended := false
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := h.fr.WriteSettingsAck(); err != nil {
					return fmt.Errorf("h2c: %w", err)
				}
				if err := h.flush(t.conn); err != nil {
					return fmt.Errorf("h2c: %w", err)
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				if err := h.fr.WritePing(true, f.Data); err != nil {
					return fmt.Errorf("h2c: %w", err)
				}
				if err := h.flush(t.conn); err != nil {
					return fmt.Errorf("h2c: %w", err)
				}
			}
		case *http2.GoAwayFrame:
			return fmt.Errorf("h2c: GOAWAY %v", f.ErrCode)
		case *http2.RSTStreamFrame:
			return fmt.Errorf("h2c: RST_STREAM %v", f.ErrCode)
		case *http2.MetaHeadersFrame:
			if f.StreamID != 1 {
				return fmt.Errorf("h2c: HEADERS on stream %d", f.StreamID)
			}
			if s := f.PseudoValue("status"); status == "" && !strings.HasPrefix(s, "1") {
				status = s
			}
			ended = f.StreamEnded()
		case *http2.DataFrame:
			ended = f.StreamID == 1 && f.StreamEnded()
		}
		if ended {
			switch status {
			case "200":
				return nil
			case "":
				return errors.New("h2c: stream 1 ended without a response")
			default:
				return fmt.Errorf("h2c: status %s", status)
			}
		}
	}
}

// stillOpen checks, without waiting, that the proxy has kept an idle h2c
// connection: whatever it sent since the response (a late SETTINGS ACK, a
// WINDOW_UPDATE, a PING) is read and passed over, and the connection counts
// as open unless that held a GOAWAY or the proxy closed or reset it. Nothing
// is sent. Reading only what is already there, it takes microseconds per
// connection; deadline bounds a frame that arrives in pieces.
func (t *tunnel) stillOpen(deadline time.Time) error {
	t.conn.SetReadDeadline(deadline)
	defer t.conn.SetReadDeadline(time.Time{})
	for {
		more, err := t.pending()
		if err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		if !more {
			return nil
		}
		f, err := t.h2.fr.ReadFrame()
		if err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			return fmt.Errorf("idle: GOAWAY %v", g.ErrCode)
		}
	}
}

// pending reports whether bytes wait to be read, in the client's buffer or
// in the socket's, without blocking: a peek at the socket returns at once
// with data, with 0 at end of stream (io.EOF) or with EAGAIN (nothing yet).
func (t *tunnel) pending() (bool, error) {
	if t.br.Buffered() > 0 {
		return true, nil
	}
	sc, ok := t.conn.(syscall.Conn)
	if !ok {
		return false, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	var (
		n    int
		rerr error
		b    [1]byte
	)
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // one try: never wait for readiness
	}); err != nil {
		return false, err
	}
	switch {
	case errors.Is(rerr, syscall.EAGAIN):
		return false, nil
	case rerr != nil:
		return false, rerr
	case n == 0:
		return false, io.EOF
	}
	return true, nil
}

// closeH2C says goodbye with a GOAWAY (NO_ERROR; no stream of the server's
// was processed) before the caller closes the socket. The write gives up at
// deadline.
func (t *tunnel) closeH2C(deadline time.Time) {
	t.conn.SetWriteDeadline(deadline)
	if t.h2.fr.WriteGoAway(0, http2.ErrCodeNo, nil) == nil {
		t.h2.flush(t.conn)
	}
}
