package router

// Faults that need the router's insides to observe: a response cut while
// the client is still uploading, and a panic in the middle of an exchange.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCutStreamWhileUploading: a sandbox that streams a chunked answer to
// a request whose body is still coming, and then resets, must not have
// its answer end cleanly at the client (the router interrupts the upload
// itself, which ends the request's context: that is no departed client).
func TestCutStreamWhileUploading(t *testing.T) {
	env := newProxyEnv(t, nil)
	// A sandbox that answers mid-body (startRawOrigin reads whole bodies).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cut := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			c.Close()
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		<-cut // the client has the start of the stream
		reset(c)
	}()
	port := ln.Addr().(*net.TCPAddr).Port

	c, err := net.Dial("tcp", env.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	fmt.Fprintf(c, "POST /stream HTTP/1.1\r\nHost: x\r\nX-Sandbox-Id: sb1\r\nX-Sandbox-Port: %d\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", port)
	// The upload never ends. The start of the stream arrives, then the
	// sandbox resets.
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var start [5]byte
	if _, err := io.ReadFull(resp.Body, start[:]); err != nil || string(start[:]) != "hello" {
		t.Fatalf("start of the stream: %q %v", start, err)
	}
	close(cut)
	raw, _ := io.ReadAll(br)
	got := string(raw)
	if strings.Contains(got, "0\r\n\r\n") {
		t.Fatalf("a stream the sandbox cut ends cleanly at the client: %q", got)
	}
}

// reset closes c with a TCP RST.
func reset(c net.Conn) {
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// panickingWriter panics when the body is written: a bug in the middle of
// an exchange, after its connection was taken from the pool.
type panickingWriter struct{ http.ResponseWriter }

func (panickingWriter) Write([]byte) (int, error) { panic("writer bug") }

// TestPanicFreesThePoolPlace: a panic while an upstream connection is in
// use still frees its place under the per-endpoint cap once the request's
// context ends (as net/http ends it after a panic).
func TestPanicFreesThePoolPlace(t *testing.T) {
	env := newProxyEnv(t, func(o *Options) { o.Pool.MaxConnsPerEndpoint = 1 })
	be, _ := startRecorder(t, false)
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
		req.Header.Set(HeaderSandboxID, "sb1")
		req.Header.Set(HeaderSandboxPort, strconv.Itoa(be.port))
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			env.rt.ServeHTTP(panickingWriter{httptest.NewRecorder()}, req)
		}()
		cancel()
		waitUntil(t, "the connection's place freed after panic "+strconv.Itoa(i), func() bool {
			return env.metric("sandbox_router_upstream_connections", nil) == 0
		})
	}
	// The endpoint still serves: no place was lost.
	if r := doRequest(env.client(viaH1), env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", be.port, nil)); r.status != 200 {
		t.Fatalf("after the panics: %d %v", r.status, r.err)
	}
}
