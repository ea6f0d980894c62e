package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/sandbox-router/sandbox-router/bench/tunnels/internal/ws"
)

// endpoint is where and how to open a tunnel.
type endpoint struct {
	addr    string   // host:port to dial
	host    string   // Host header
	path    string   // /ws, /sse or /healthz (h2c)
	kind    string   // ws, sse or h2c
	headers []string // extra "K: V" header lines
	timeout time.Duration
}

// tunnel is one open connection through the proxy. br holds whatever the
// proxy sent past the response head; a WebSocket's echo is read from it.
// h2 is the HTTP/2 framing of an h2c connection (nil for the others).
type tunnel struct {
	conn net.Conn
	br   *bufio.Reader
	h2   *h2conn
}

// readBufSize is small on purpose: the client holds thousands of these and
// only ever reads a response head and short frames.
const readBufSize = 1024

// open dials from src (nil: the kernel's choice) and completes the
// handshake of e.kind, all within e.timeout.
func (e *endpoint) open(ctx context.Context, src net.IP) (*tunnel, error) {
	deadline := time.Now().Add(e.timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	d := net.Dialer{KeepAlive: -1} // no keep-alive probes: the tunnels must stay truly idle
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	conn, err := d.DialContext(ctx, "tcp", e.addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	conn.SetDeadline(deadline)
	t := &tunnel{conn: conn, br: bufio.NewReaderSize(conn, readBufSize)}
	switch e.kind {
	case "ws":
		err = e.handshakeWS(t)
	case "h2c":
		err = e.openH2C(t)
	default:
		err = e.openSSE(t)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return t, nil
}

// request writes the request head: the fixed lines, then -header lines.
func (e *endpoint) request(w io.Writer, lines ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", e.path, e.host)
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	for _, h := range e.headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// handshakeWS is the client side of RFC 6455's opening handshake.
func (e *endpoint) handshakeWS(t *tunnel) error {
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	if err := e.request(t.conn, "Upgrade: websocket", "Connection: Upgrade",
		"Sec-WebSocket-Key: "+key, "Sec-WebSocket-Version: 13"); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	resp, err := http.ReadResponse(t.br, nil)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	resp.Body.Close() // a 101 has no body; the stream after the head is the WebSocket's
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("handshake: status %d", resp.StatusCode)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), ws.AcceptKey(key); got != want {
		return fmt.Errorf("handshake: Sec-WebSocket-Accept %q, want %q", got, want)
	}
	return nil
}

// openSSE sends the GET and reads until the first event, so that the
// stream is known to run end to end through the proxy (a buffering proxy
// would hold the event back and fail here).
func (e *endpoint) openSSE(t *tunnel) error {
	if err := e.request(t.conn, "Accept: text/event-stream"); err != nil {
		return fmt.Errorf("sse: %w", err)
	}
	resp, err := http.ReadResponse(t.br, nil)
	if err != nil {
		return fmt.Errorf("sse: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sse: status %d", resp.StatusCode)
	}
	// The body reader (chunked, usually) sits on t.br; reading the first
	// event through it leaves the rest of the stream where it is.
	var got []byte
	buf := make([]byte, 256)
	for !bytes.Contains(got, []byte("data: hello\n")) {
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return fmt.Errorf("sse: first event: %w", err)
		}
		if len(got) > 4096 {
			return errors.New("sse: no \"data: hello\" in the first 4 KiB")
		}
	}
	return nil
}

// echo sends one masked text frame and checks that the same text comes
// back before deadline.
func (t *tunnel) echo(msg string, deadline time.Time) error {
	t.conn.SetDeadline(deadline)
	defer t.conn.SetDeadline(time.Time{})
	var mask [4]byte
	rand.Read(mask[:])
	if err := ws.WriteFrame(t.conn, true, ws.OpText, []byte(msg), &mask); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	f, err := ws.ReadFrame(t.br)
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if f.Opcode != ws.OpText || string(f.Payload) != msg {
		return fmt.Errorf("echo: opcode %d %q, want text %q", f.Opcode, f.Payload, msg)
	}
	return nil
}

// close ends the tunnel: a WebSocket says goodbye with a close frame
// (status 1000) first, an h2c connection with a GOAWAY, neither waiting for
// an answer; an SSE stream just hangs up, as a browser tab does. The frame's
// write gives up at deadline (an idle connection's send buffer is empty, so
// it should not wait at all).
func (t *tunnel) close(kind string, deadline time.Time) {
	switch kind {
	case "ws":
		t.conn.SetWriteDeadline(deadline)
		var mask [4]byte
		rand.Read(mask[:])
		ws.WriteFrame(t.conn, true, ws.OpClose, []byte{0x03, 0xE8}, &mask)
	case "h2c":
		t.closeH2C(deadline)
	}
	t.conn.Close()
}

// errClass turns an error into a short, address-free label, so that
// thousands of failures group into a few lines.
func errClass(err error) string {
	stage, _, _ := strings.Cut(err.Error(), ":")
	var errno syscall.Errno
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return stage + ": timeout"
	case errors.As(err, &errno):
		return stage + ": " + errno.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return stage + ": connection closed by the proxy"
	}
	msg := err.Error()
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}
