package router

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
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

// TestHTTP2AuthorityValidated: an HTTP/2 :authority is checked as a host
// name, as net/http checks an HTTP/1.1 Host header: it is written into the
// sandbox's Host line.
func TestHTTP2AuthorityValidated(t *testing.T) {
	be, seen := startRecorder(t, false)
	srv, _ := startServer(t, newTestRouter(t), ServerOptions{HTTPAddr: "127.0.0.1:0", DrainTimeout: 5 * time.Second})
	for _, tc := range []struct {
		authority string
		want      int
	}{
		{"public.example.com", 200},
		{"a b", 400},
		{"evil.example.com/path", 400},
		{"x\"y", 400},
	} {
		status, ctype := rawH2Get(t, srv.HTTPAddr(), tc.authority, be.port)
		if status != tc.want {
			t.Errorf(":authority %q: status %d, want %d", tc.authority, status, tc.want)
		}
		if status == 400 && ctype != "application/json" {
			// A sandbox's net/http server answers text/plain: the
			// request went through.
			t.Errorf(":authority %q: the 400 is not the router's (Content-Type %q)", tc.authority, ctype)
		}
		if status == 200 {
			if got := recv(t, seen, "the request at the sandbox"); got.Host != tc.authority {
				t.Errorf("Host at the sandbox %q", got.Host)
			}
		}
	}
}

// rawH2Get sends one GET over h2c prior knowledge with the given
// :authority, which Go's client would refuse to send, and returns the
// response's :status and Content-Type.
func rawH2Get(t *testing.T, addr, authority string, port int) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", authority}, {":path", "/"},
		{"x-sandbox-id", "sb1"}, {"x-sandbox-port", strconv.Itoa(port)}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the answer to :authority %q: %v", authority, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			s, _ := strconv.Atoi(f.PseudoValue("status"))
			ctype := ""
			for _, hf := range f.RegularFields() {
				if hf.Name == "content-type" {
					ctype = hf.Value
				}
			}
			return s, ctype
		case *http2.RSTStreamFrame:
			return -1, ""
		case *http2.GoAwayFrame:
			return -2, ""
		}
	}
}
