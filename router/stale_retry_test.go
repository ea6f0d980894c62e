package router

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
)

// TestStaleRetryDialsFresh: when a sandbox's server goes away (a pod
// stopping), every pooled connection to it dies at once. A GET sent into
// one of them is retried once: on a new connection, not on the next pooled
// one, which is as dead (found by e2e/activator: a request racing a
// suspension was answered 502).
func TestStaleRetryDialsFresh(t *testing.T) {
	env := newProxyEnv(t, nil)
	// The first two connections drop their first request unanswered; the
	// later ones answer.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns, dropped atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if n <= 2 {
						dropped.Add(1)
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	addr := netip.AddrPortFrom(loopback, uint16(port))
	var seeded []*upConn
	for range 2 {
		c, _, err := env.rt.pool.acquire(context.Background(), addr, true)
		if err != nil {
			t.Fatal(err)
		}
		seeded = append(seeded, c)
	}
	for _, c := range seeded {
		env.rt.pool.put(c)
	}
	waitUntil(t, "the sandbox to accept both pooled connections", func() bool { return conns.Load() == 2 })

	res := doRequest(env.client(viaH1), env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", port, nil))
	if res.err != nil || res.status != http.StatusOK {
		t.Fatalf("GET after its pooled connection died: %d %v, want 200 from a new connection", res.status, res.err)
	}
	if n := dropped.Load(); n != 1 {
		t.Errorf("%d requests dropped, want 1: the retry must not take the other pooled connection", n)
	}
	if got := env.metric("sandbox_router_upstream_retries_total", nil); got != 1 {
		t.Errorf("retries = %v, want 1", got)
	}
}
