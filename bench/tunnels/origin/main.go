// Command origin is the tunnels benchmark's sandbox stand-in: a plain
// net/http server that holds many long-lived, idle connections cheaply.
//
//	GET /ws       WebSocket (RFC 6455, hand-rolled): echoes every frame back
//	GET /sse      text/event-stream: "data: hello" at once, then one event
//	              every -sse-interval until the client leaves
//	GET /healthz  "ok"
//
// It is driven by bench/tunnels.sh; bench/tunnels/client opens the
// connections through a proxy.
package main

import (
	"bytes"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sandbox-router/sandbox-router/bench/tunnels/internal/ws"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "listen address")
	sseInterval := flag.Duration("sse-interval", 60*time.Second, "time between SSE events after the first")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /ws", serveWebSocket)
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		serveSSE(w, r, *sseInterval)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("origin listening on %s", ln.Addr())
	// No read or write timeout: the connections are meant to stay idle for
	// as long as the client keeps them. A header timeout still guards the
	// request line.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}

// hasToken reports whether a comma-separated header (Connection, Upgrade)
// lists token, ignoring case.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serveWebSocket answers the opening handshake, then hands the raw
// connection to echo. The handler's goroutine becomes the connection's only
// goroutine; the server's buffered reader and writer are dropped, so an idle
// WebSocket costs a socket, a goroutine and its small stack.
func serveWebSocket(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !hasToken(r.Header, "Upgrade", "websocket") || !hasToken(r.Header, "Connection", "upgrade") ||
		r.Header.Get("Sec-WebSocket-Version") != "13" || key == "" {
		http.Error(w, "not a WebSocket handshake", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		log.Printf("ws: hijack: %v", err)
		return
	}
	defer conn.Close()

	// A client may send its first frame right behind the handshake; those
	// bytes sit in the server's reader. Read them first, then the socket.
	var in io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		in = io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)
	}
	head := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + ws.AcceptKey(key) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		return
	}
	echo(in, conn)
}

// echo sends every data frame back unmasked, answers pings, and on a close
// frame returns the close (with the client's status code) and ends.
func echo(in io.Reader, conn net.Conn) {
	for {
		f, err := ws.ReadFrame(in)
		if err != nil {
			return // the peer left, or sent something we do not read
		}
		switch f.Opcode {
		case ws.OpText, ws.OpBinary, ws.OpContinuation:
			err = ws.WriteFrame(conn, f.Fin, f.Opcode, f.Payload, nil)
		case ws.OpPing:
			err = ws.WriteFrame(conn, true, ws.OpPong, f.Payload, nil)
		case ws.OpPong:
		case ws.OpClose:
			code := f.Payload
			if len(code) > 2 {
				code = code[:2] // the status code, without the reason
			}
			ws.WriteFrame(conn, true, ws.OpClose, code, nil)
			return
		default:
			return // unknown opcode: RFC 6455 says fail the connection
		}
		if err != nil {
			return
		}
	}
}

// serveSSE writes one event at once, so that a client knows the stream is
// through, then one event per interval until the client goes away.
func serveSSE(w http.ResponseWriter, r *http.Request, interval time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer this response
	rc := http.NewResponseController(w)
	send := func() bool {
		if _, err := io.WriteString(w, "data: hello\n\n"); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send() {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			if !send() {
				return
			}
		}
	}
}
