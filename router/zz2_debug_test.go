package router

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
)

func TestZZDrop(t *testing.T) {
	env := newProxyEnv(t, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				br := bufio.NewReader(c)
				http.ReadRequest(br)
				buf := make([]byte, 1000)
				io.ReadFull(br, buf)
				c.Close()
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, n := range []int64{10000, 4 << 20} {
		for _, chunked := range []bool{false, true} {
			req := env.sandboxRequest(context.Background(), viaH1, http.MethodPost, "/", port, newPatternReader(1, n))
			if !chunked {
				req.ContentLength = n
			}
			res := doRequest(env.client(viaH1), req)
			t.Logf("n=%d chunked=%v: %d %q %v %v", n, chunked, res.status, res.body, res.err, res.header)
		}
	}
}
