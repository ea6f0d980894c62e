package router

// Tunnels at the byte level: a raw sandbox that answers any Upgrade with
// 101 and then echoes bytes, so a test can count descriptors exactly,
// reset one side, or half-close, without a WebSocket library in the way.

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawSandbox answers every request with 101 Switching Protocols and echoes
// what follows. Its accepted connections arrive on conns, so a test can
// break one.
type rawSandbox struct {
	port     int
	conns    chan net.Conn
	upgrades atomic.Int64
}

func startRawSandbox(t *testing.T) *rawSandbox {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawSandbox{port: ln.Addr().(*net.TCPAddr).Port, conns: make(chan net.Conn, 1024)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *rawSandbox) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Header.Get("Upgrade") == "" {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return
	}
	s.upgrades.Add(1)
	if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
		return
	}
	select {
	case s.conns <- c:
	default:
	}
	buf := make([]byte, 4096)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err == io.EOF {
			// The client half-closed: say goodbye on the way out.
			io.WriteString(c, "bye")
			return
		}
		if err != nil {
			return
		}
	}
}

// openRawTunnel upgrades a new connection to the router into a tunnel to
// the sandbox and returns it with the router's answer (101 or a refusal).
func openRawTunnel(t *testing.T, addr string, port int) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	req := "GET /tty HTTP/1.1\r\nHost: router\r\nConnection: Upgrade\r\nUpgrade: echo\r\n" +
		HeaderSandboxID + ": sb1\r\n" + HeaderSandboxPort + ": " + strconv.Itoa(port) + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the upgrade's answer: %v", err)
	}
	return c, br, resp
}

// echoOnce sends msg through a tunnel and checks it comes back.
func echoOnce(t *testing.T, c net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
		t.Fatalf("echo = %q, %v; want %q", got, err, msg)
	}
}

// openSockets counts this process's sockets (other descriptors come and
// go with the runtime: it reads cgroup files).
func openSockets(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// TestTunnelDescriptors: a tunnel costs exactly its two sockets in the
// router (the client's and the sandbox's; this process also holds the
// test client's and the sandbox's ends: four in all), no pipe while idle
// or moving bytes, and nothing once closed, without waiting for a GC.
// A spliced tunnel held two pipes per direction on top, pooled after.
func TestTunnelDescriptors(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts /proc/self/fd")
	}
	env := newProxyEnv(t, nil)
	sb := startRawSandbox(t)
	const n = 16
	before, pipes := openSockets(t), openPipes(t)
	type end struct {
		c  net.Conn
		br *bufio.Reader
	}
	var ends []end
	for i := range n {
		c, br, resp := openRawTunnel(t, env.httpAddr, sb.port)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("tunnel %d: status %d", i, resp.StatusCode)
		}
		ends = append(ends, end{c, br})
	}
	for i, e := range ends {
		echoOnce(t, e.c, e.br, "hello "+strconv.Itoa(i))
	}
	// A bulk transfer through one, then idle again.
	big := string(make([]byte, 1<<20))
	go io.WriteString(ends[0].c, big)
	got, err := io.ReadFull(ends[0].br, make([]byte, len(big)))
	if err != nil || got != len(big) {
		t.Fatalf("bulk echo: %d bytes, %v", got, err)
	}
	waitUntil(t, "4 sockets per tunnel in this process", func() bool { return openSockets(t)-before == 4*n })
	if p := openPipes(t); p != pipes {
		t.Errorf("%d pipes open after a bulk transfer, %d before: splice pipes are held", p, pipes)
	}
	for _, e := range ends {
		e.c.Close()
	}
	waitUntil(t, "every tunnel's descriptors to be closed", func() bool { return openSockets(t) == before })
	waitUntil(t, "the tunnel gauge to reach 0", func() bool { return env.upgradedOpen() == 0 })
}

// TestTunnelFaultIsolation: a sandbox that resets one tunnel closes that
// tunnel only; its neighbour goes on echoing.
func TestTunnelFaultIsolation(t *testing.T) {
	env := newProxyEnv(t, nil)
	sb := startRawSandbox(t)
	a, abr, _ := openRawTunnel(t, env.httpAddr, sb.port)
	aSandbox := recv(t, sb.conns, "tunnel A at the sandbox")
	b, bbr, _ := openRawTunnel(t, env.httpAddr, sb.port)
	recv(t, sb.conns, "tunnel B at the sandbox")
	echoOnce(t, a, abr, "a1")
	echoOnce(t, b, bbr, "b1")

	aSandbox.(*net.TCPConn).SetLinger(0) // close with a reset
	aSandbox.Close()
	_ = a.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := abr.ReadByte(); err == nil {
		t.Fatal("tunnel A still open after its sandbox reset it")
	}
	echoOnce(t, b, bbr, "b2 after A broke")
	waitUntil(t, "one tunnel left", func() bool { return env.upgradedOpen() == 1 })
}

// TestTunnelHalfClose: the client's end of stream reaches the sandbox as
// a half-close; the sandbox's last words still come back.
func TestTunnelHalfClose(t *testing.T) {
	env := newProxyEnv(t, nil)
	sb := startRawSandbox(t)
	c, br, _ := openRawTunnel(t, env.httpAddr, sb.port)
	echoOnce(t, c, br, "ping")
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after half-close: %q, %v; want \"bye\" then EOF", rest, err)
	}
	waitUntil(t, "the tunnel to end", func() bool { return env.upgradedOpen() == 0 })
}

func openPipes(t *testing.T) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

// batchingConn holds its first write and sends it with the second, so two
// TLS records reach the router in one segment.
type batchingConn struct {
	net.Conn
	held []byte
	arm  bool
}

func (b *batchingConn) Write(p []byte) (int, error) {
	if b.arm {
		b.arm = false
		b.held = append(b.held[:0], p...)
		return len(p), nil
	}
	if b.held != nil {
		p = append(b.held, p...)
		b.held = nil
		n, err := b.Conn.Write(p)
		return min(n, len(p)), err
	}
	return b.Conn.Write(p)
}

// TestTunnelTLSBufferedRecords: over TLS the router reads records ahead
// of what it relays; a record that arrived with the one before it is
// relayed at once, not when the client next sends something.
func TestTunnelTLSBufferedRecords(t *testing.T) {
	env := newProxyEnv(t, nil)
	sb := startRawSandbox(t)
	raw, err := net.Dial("tcp", env.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	bc := &batchingConn{Conn: raw}
	c := tls.Client(bc, &tls.Config{RootCAs: env.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	io.WriteString(c, "GET /tty HTTP/1.1\r\nHost: router\r\nConnection: Upgrade\r\nUpgrade: echo\r\n"+
		HeaderSandboxID+": sb1\r\n"+HeaderSandboxPort+": "+strconv.Itoa(sb.port)+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade over TLS: %v %v", resp, err)
	}
	echoOnce(t, c, br, "warm")
	bc.arm = true
	io.WriteString(c, "first ") // held back...
	io.WriteString(c, "second") // ...and sent with this one: two records, one segment
	got := make([]byte, len("first second"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "first second" {
		t.Fatalf("echo %q, %v; want both records", got, err)
	}
}
