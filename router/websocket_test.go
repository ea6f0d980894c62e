package router

// End-to-end WebSocket through the router's upgrade splice, with
// github.com/coder/websocket on both ends.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/coder/websocket"
)

// wsSandbox is an echo server that, like Jupyter, accepts a browser's
// handshake only when the Origin's host is the Host it was reached at.
type wsSandbox struct {
	*backend
	// handshakes reports the Host and Origin of each handshake and
	// whether it was accepted.
	handshakes chan wsHandshake
	// ended reports how each accepted connection ended on the sandbox.
	ended chan error
}

type wsHandshake struct {
	host, origin string
	accepted     bool
}

func startWSSandbox(t *testing.T) *wsSandbox {
	t.Helper()
	s := &wsSandbox{handshakes: make(chan wsHandshake, 16), ended: make(chan error, 16)}
	s.backend = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		u, err := url.Parse(origin)
		if origin != "" && (err != nil || u.Host != r.Host) {
			s.handshakes <- wsHandshake{r.Host, origin, false}
			http.Error(w, "cross-origin WebSocket refused", http.StatusForbidden)
			return
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			InsecureSkipVerify: true, // the Origin check is ours, above
			Subprotocols:       []string{"v1.kernel.websocket.jupyter.org"},
		})
		if err != nil {
			s.handshakes <- wsHandshake{r.Host, origin, false}
			return
		}
		s.handshakes <- wsHandshake{r.Host, origin, true}
		defer c.CloseNow()
		c.SetReadLimit(4 << 20)
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				s.ended <- err
				return
			}
			if string(msg) == "close please" {
				s.ended <- c.Close(websocket.StatusNormalClosure, "bye")
				return
			}
			if err := c.Write(ctx, typ, append([]byte("echo: "), msg...)); err != nil {
				s.ended <- err
				return
			}
		}
	}), false)
	return s
}

// wsDial opens a WebSocket to the sandbox through the router, by public
// host name or by X-Sandbox-* headers, with the browser-style Origin of
// the host it uses.
func wsDial(t *testing.T, env *proxyEnv, sb *wsSandbox, byHost bool, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	host := env.httpAddr
	h := http.Header{}
	if byHost {
		host = fmt.Sprintf("%d-sb1.default.%s", sb.port, testBaseDomain)
	} else {
		h.Set(HeaderSandboxID, "sb1")
		h.Set(HeaderSandboxPort, strconv.Itoa(sb.port))
	}
	if origin == "" {
		origin = "http://" + host
	}
	h.Set("Origin", origin)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return websocket.Dial(ctx, "ws://"+host+"/api/kernels/k1/channels", &websocket.DialOptions{
		HTTPClient:   env.client(viaH1),
		HTTPHeader:   h,
		Subprotocols: []string{"v1.kernel.websocket.jupyter.org"},
	})
}

func (e *proxyEnv) upgradedOpen() float64 {
	return e.metric("sandbox_router_upgraded_connections", nil)
}

// TestWebSocketEcho: lock-step echo of text and binary messages, small
// and large, by host and by header routing; the client's close ends the
// splice.
func TestWebSocketEcho(t *testing.T) {
	for _, byHost := range []bool{true, false} {
		t.Run(fmt.Sprintf("by host=%v", byHost), func(t *testing.T) {
			env := newProxyEnv(t, nil)
			sb := startWSSandbox(t)
			c, resp, err := wsDial(t, env, sb, byHost, "")
			if err != nil {
				t.Fatalf("dial: %v (response %v)", err, resp)
			}
			defer c.CloseNow()
			hs := recv(t, sb.handshakes, "the handshake at the sandbox")
			if !hs.accepted {
				t.Fatalf("sandbox refused the handshake: Host %q, Origin %q", hs.host, hs.origin)
			}
			if c.Subprotocol() != "v1.kernel.websocket.jupyter.org" {
				t.Errorf("subprotocol %q not negotiated through the router", c.Subprotocol())
			}
			waitUntil(t, "the upgraded gauge to count the connection", func() bool { return env.upgradedOpen() == 1 })

			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			c.SetReadLimit(4 << 20)
			for i := range 10 {
				typ, msg := websocket.MessageText, []byte("message "+strconv.Itoa(i))
				if i%3 == 2 {
					typ, msg = websocket.MessageBinary, bytes.Repeat([]byte{byte(i)}, 1<<20)
				}
				if err := c.Write(ctx, typ, msg); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				gotTyp, got, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				if gotTyp != typ || !bytes.Equal(got, append([]byte("echo: "), msg...)) {
					t.Fatalf("echo %d: type %v, %d bytes", i, gotTyp, len(got))
				}
			}

			if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
				t.Fatalf("close: %v", err)
			}
			end := recv(t, sb.ended, "the sandbox to see the close")
			if websocket.CloseStatus(end) != websocket.StatusNormalClosure {
				t.Errorf("sandbox saw %v, want a normal close", end)
			}
			waitUntil(t, "the splice to end", func() bool { return env.upgradedOpen() == 0 })
			if got := env.metric("sandbox_router_upgraded_connections_total", nil); got != 1 {
				t.Errorf("upgraded total = %v, want 1", got)
			}
			// Counted when the handler returns, just after the gauge.
			waitUntil(t, "the upgrade to be counted as a 101", func() bool {
				return env.metric("sandbox_router_requests_total", map[string]string{"code": "101"}) == 1
			})
		})
	}
}

// TestWebSocketCloseFromSandbox: a close initiated by the sandbox reaches
// the client with its status and reason, and ends the splice.
func TestWebSocketCloseFromSandbox(t *testing.T) {
	env := newProxyEnv(t, nil)
	sb := startWSSandbox(t)
	c, _, err := wsDial(t, env, sb, true, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	waitUntil(t, "the upgraded gauge to count the connection", func() bool { return env.upgradedOpen() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("close please")); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure || ce.Reason != "bye" {
		t.Fatalf("client read %v, want the sandbox's close (1000 bye)", err)
	}
	if err := recv(t, sb.ended, "the sandbox's close to complete"); err != nil {
		t.Errorf("sandbox close handshake: %v", err)
	}
	waitUntil(t, "the splice to end", func() bool { return env.upgradedOpen() == 0 })
}

// TestWebSocketAbruptClientDisconnect: a client that drops its TCP
// connection without a close frame still ends the splice and the
// sandbox's connection.
func TestWebSocketAbruptClientDisconnect(t *testing.T) {
	env := newProxyEnv(t, nil)
	sb := startWSSandbox(t)
	c, _, err := wsDial(t, env, sb, true, "")
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the upgraded gauge to count the connection", func() bool { return env.upgradedOpen() == 1 })
	c.CloseNow()
	if err := recv(t, sb.ended, "the sandbox to see the disconnect"); err == nil {
		t.Error("sandbox read ended without an error")
	}
	waitUntil(t, "the splice to end", func() bool { return env.upgradedOpen() == 0 })
}

// TestWebSocketOriginCheck: the router keeps Host as the client sent it,
// so a sandbox's same-origin check accepts a browser on the public host
// and refuses a foreign page; the refusal reaches the client as is.
func TestWebSocketOriginCheck(t *testing.T) {
	env := newProxyEnv(t, nil)
	sb := startWSSandbox(t)
	public := fmt.Sprintf("%d-sb1.default.%s", sb.port, testBaseDomain)

	c, _, err := wsDial(t, env, sb, true, "https://"+public)
	if err != nil {
		t.Fatalf("same-origin handshake refused: %v", err)
	}
	hs := recv(t, sb.handshakes, "the same-origin handshake")
	if !hs.accepted || hs.host != public {
		t.Fatalf("sandbox saw Host %q Origin %q accepted=%v", hs.host, hs.origin, hs.accepted)
	}
	c.Close(websocket.StatusNormalClosure, "")
	recv(t, sb.ended, "the first connection to end")

	_, resp, err := wsDial(t, env, sb, true, "https://evil.example.com")
	if err == nil {
		t.Fatal("cross-origin handshake accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin handshake: %v, response %v; want the sandbox's 403", err, resp)
	}
	if hs := recv(t, sb.handshakes, "the cross-origin handshake"); hs.accepted {
		t.Fatal("sandbox accepted a foreign Origin")
	}
	waitUntil(t, "no upgraded connection", func() bool { return env.upgradedOpen() == 0 })
	if got := env.metric("sandbox_router_upgraded_connections_total", nil); got != 1 {
		t.Errorf("upgraded total = %v, want 1 (the refused handshake is no upgrade)", got)
	}
}
