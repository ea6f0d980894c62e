package router

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEndlessResponseHeadersAreCut: a sandbox that streams headers forever
// gets the client a 502, not a router that buffers without bound.
func TestEndlessResponseHeadersAreCut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		http.ReadRequest(bufio.NewReader(c))
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
		if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\n")); err != nil {
			return
		}
		for {
			if _, err := c.Write([]byte(line)); err != nil {
				return // the router gave up on us: good
			}
		}
	}()
	srv, _ := startServer(t, newTestRouter(t), ServerOptions{HTTPAddr: "127.0.0.1:0", DrainTimeout: 5 * time.Second})
	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.HTTPAddr()+"/", nil)
	req.Header.Set(HeaderSandboxID, "sb1")
	req.Header.Set(HeaderSandboxPort, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status = %d, want 502", resp.StatusCode)
	}
}
