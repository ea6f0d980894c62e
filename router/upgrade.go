package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// upgradedConn is a spliced client<->sandbox connection (WebSocket or any
// other Upgrade). It lives outside net/http's accounting, so the router
// tracks it to close it at the end of a drain.
type upgradedConn struct {
	client   net.Conn
	upstream net.Conn
	once     sync.Once
}

func (u *upgradedConn) close() {
	u.once.Do(func() {
		u.client.Close()
		u.upstream.Close()
	})
}

// serveUpgrade completes a 101 response: it takes over the client
// connection, relays the sandbox's 101 head, and copies bytes both ways
// until either side closes. No timeout applies: a healthy WebSocket may
// stay open for days; dead peers are found by TCP keep-alive.
func (rt *Router) serveUpgrade(w http.ResponseWriter, r *http.Request, ex *h1Exchange, rec *record) {
	resp := ex.resp // the caller stopped the request context's cancel: the splice owns the connection
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
	up.detach() // the splice owns it now, outside the pool's cap

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

	u := &upgradedConn{client: client, upstream: up.nc}
	if !rt.trackUpgrade(u) {
		u.close() // draining: the router is closing upgraded connections
		return
	}
	rt.metrics.upgradedOpen.Inc()
	rt.metrics.upgradedTotal.Inc()
	defer func() {
		rt.untrackUpgrade(u)
		rt.metrics.upgradedOpen.Dec()
		u.close()
	}()

	var wg sync.WaitGroup
	var in, out int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		in = splice(up.nc, brw.Reader, client, u)
	}()
	out = splice(client, up.br, up.nc, u)
	wg.Wait()
	rec.bytesIn, rec.bytesOut = in, out
}

// splice copies bytes already buffered in br, then the rest of src, into
// dst. On a clean EOF it half-closes dst so the other side sees the end of
// the stream and the opposite direction may finish; on an error it closes
// the whole pair.
func splice(dst net.Conn, br *bufio.Reader, src net.Conn, u *upgradedConn) int64 {
	var n int64
	if k := br.Buffered(); k > 0 {
		b, _ := br.Peek(k)
		m, err := dst.Write(b)
		n += int64(m)
		if err != nil {
			u.close()
			return n
		}
	}
	// io.Copy between two *net.TCPConn uses splice(2): no user-space copy.
	m, err := io.Copy(dst, src)
	n += m
	if err != nil {
		u.close()
		return n
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return n
		}
	}
	u.close()
	return n
}

func (rt *Router) trackUpgrade(u *upgradedConn) bool {
	rt.upgradesMu.Lock()
	defer rt.upgradesMu.Unlock()
	if rt.upgrades == nil {
		return false
	}
	rt.upgrades[u] = struct{}{}
	return true
}

func (rt *Router) untrackUpgrade(u *upgradedConn) {
	rt.upgradesMu.Lock()
	defer rt.upgradesMu.Unlock()
	delete(rt.upgrades, u)
}

// CloseUpgraded closes every upgraded connection and refuses new ones. The
// server calls it at the end of a graceful drain.
func (rt *Router) CloseUpgraded() int {
	rt.upgradesMu.Lock()
	conns := rt.upgrades
	rt.upgrades = nil
	rt.upgradesMu.Unlock()
	for u := range conns {
		u.close()
	}
	return len(conns)
}
