package router

import (
	"net/http"
	"net/url"
	"time"
)

// serveUpgrade completes a 101 response: it takes over the client
// connection, relays the sandbox's 101 head and hands both connections to
// a tunnel (tunnel.go). It returns at once; the tunnel finishes the
// request's bookkeeping when it closes, so the handler's goroutine (and
// its deep stack) does not stay behind for the life of a WebSocket.
// rec.tunneled says whether the tunnel took the request (and its place
// under the tunnel cap).
func (rt *Router) serveUpgrade(w http.ResponseWriter, r *http.Request, ex *h1Exchange, rec *record) {
	resp := ex.resp // the caller stopped the request context's cancel: the tunnel owns the connection
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		ex.conn.discard()
		rec.status, rec.code = http.StatusInternalServerError, "upgrade_failed"
		rt.log.Error("hijack failed", "err", err)
		return
	}
	rec.status = http.StatusSwitchingProtocols
	rec.upgraded = true
	_ = client.SetDeadline(time.Time{}) // clear the server's read/write timeouts
	up := ex.conn
	up.detach() // the tunnel owns it now, outside the pool's cap

	head := make(http.Header, len(resp.Header)+2)
	copyResponseHeaders(head, resp.Header, ex.connTokens)
	confineResponse(head, &rec.key)
	head["Connection"] = []string{"Upgrade"}
	head["Upgrade"] = resp.Header["Upgrade"]
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	head.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		client.Close()
		up.nc.Close()
		return
	}
	// Bytes either side sent right behind the handshake are still in the
	// buffered readers; copy them out so the readers (4 KiB each) are not
	// kept for the life of the tunnel.
	t := &tunnel{rt: rt, client: client, upstream: up.nc, req: loggedRequest(r), rec: *rec}
	rec.tunneled = true
	rt.openTunnel(t, buffered(brw.Reader.Buffered(), brw.Reader.Peek), buffered(up.br.Buffered(), up.br.Peek))
}

// loggedRequest keeps of r what the access log reads when the tunnel
// closes, so that a tunnel does not hold the whole request (its headers,
// its context) for its life.
func loggedRequest(r *http.Request) *http.Request {
	lr := &http.Request{Method: r.Method, URL: &url.URL{Path: r.URL.Path}, RemoteAddr: r.RemoteAddr}
	if tp := r.Header["Traceparent"]; tp != nil {
		lr.Header = http.Header{"Traceparent": tp}
	}
	return lr
}

// buffered copies the n bytes a buffered reader holds.
func buffered(n int, peek func(int) ([]byte, error)) []byte {
	if n == 0 {
		return nil
	}
	b, _ := peek(n)
	return append([]byte(nil), b...)
}
