package router

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestZZRaw(t *testing.T) {
	env := newProxyEnv(t, nil)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "denied", http.StatusForbidden)
	}), false)
	for i := 0; i < 10; i++ {
		c, _ := net.Dial("tcp", env.httpAddr)
		n := 4 << 20
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Sandbox-Id: sb1\r\nX-Sandbox-Port: %d\r\nContent-Length: %d\r\n\r\n", be.port, n)
		werr := make(chan error, 1)
		start := time.Now()
		go func() { _, err := io.Copy(c, newPatternReader(1, int64(n))); werr <- err }()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Logf("%d: read err %v after %v", i, err, time.Since(start))
		} else {
			b, err := io.ReadAll(resp.Body)
			t.Logf("%d: %d %v %q %v after %v", i, resp.StatusCode, resp.Header, b, err, time.Since(start))
		}
		t.Logf("write: %v after %v", <-werr, time.Since(start))
		c.Close()
	}
}
