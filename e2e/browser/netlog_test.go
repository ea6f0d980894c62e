package browser

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/network"
)

// The network log: what the tab sent and what came back, read from the
// DevTools protocol's Network events. The page shows what it ended on;
// the log shows each hop on the way (the router's 302 and 403, the
// sandbox's 303) and, for each request, the cookies Chromium attached or
// held back and why, which no page can see of an HttpOnly cookie.

// exchange is one request the tab sent (one hop of a redirect chain, or a
// WebSocket handshake) and what came back.
type exchange struct {
	Method, URL string
	WebSocket   bool
	// Status is the answer's status; 0 until there is one.
	Status int64
	// ServedBy is the answer's X-Served-By, which the sim sets on every
	// answer: empty when the router answered itself.
	ServedBy string
	// Protocol is how the answer came ("h2", "http/1.1"), when known.
	Protocol string
	// Cookies are the cookies Chromium considered for the request, with
	// the reasons it held back those it did not send; nil until known,
	// and never known for a WebSocket handshake (the protocol has no
	// extra-info event for it).
	Cookies []*network.AssociatedCookie
	// Failed is why the request failed, if it did.
	Failed string
}

// sent reports whether Chromium attached the cookie name of host to the
// request, and if not, why it held it back.
func (x exchange) sent(name, host string) (bool, string) {
	for _, c := range x.Cookies {
		if c.Cookie != nil && c.Cookie.Name == name && c.Cookie.Domain == host {
			if len(c.BlockedReasons) == 0 {
				return true, ""
			}
			return false, fmt.Sprint(c.BlockedReasons)
		}
	}
	return false, "not considered"
}

func (x exchange) String() string {
	return fmt.Sprintf("%s %s -> %d (served by %q, %s, failed %q)", x.Method, x.URL, x.Status, x.ServedBy, x.Protocol, x.Failed)
}

// netlog keeps the tab's requests from its network events, in order.
type netlog struct {
	mu  sync.Mutex
	all []*exchange
	// hops are the exchanges of each request ID: a redirect keeps the ID.
	hops map[network.RequestID][]*exchange
	// sentCookies are each request ID's requestWillBeSentExtraInfo
	// events, which come before or after the hop they describe: the
	// i-th belongs to the i-th hop.
	sentCookies map[network.RequestID][][]*network.AssociatedCookie
	changed     chan struct{} // closed and replaced on every change
}

func newNetlog() *netlog {
	return &netlog{hops: map[network.RequestID][]*exchange{}, sentCookies: map[network.RequestID][][]*network.AssociatedCookie{},
		changed: make(chan struct{})}
}

// wsStatus finds the status in Chromium's message for a refused
// WebSocket handshake, the one place the protocol reports it.
var wsStatus = regexp.MustCompile(`Unexpected response code: (\d+)`)

// handle runs in the tab's event loop, in the order the events came.
func (l *netlog) handle(ev any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		if r := ev.RedirectResponse; r != nil {
			if x := l.current(ev.RequestID); x != nil {
				x.answer(r.Status, r.Headers, r.Protocol)
			}
		}
		l.start(ev.RequestID, &exchange{Method: ev.Request.Method, URL: ev.Request.URL + ev.Request.URLFragment})
	case *network.EventWebSocketCreated:
		l.start(ev.RequestID, &exchange{Method: http.MethodGet, URL: ev.URL, WebSocket: true})
	case *network.EventRequestWillBeSentExtraInfo:
		cs := ev.AssociatedCookies
		if cs == nil {
			cs = []*network.AssociatedCookie{} // known: none
		}
		l.sentCookies[ev.RequestID] = append(l.sentCookies[ev.RequestID], cs)
		l.match(ev.RequestID)
	case *network.EventResponseReceived:
		if x := l.current(ev.RequestID); x != nil {
			x.answer(ev.Response.Status, ev.Response.Headers, ev.Response.Protocol)
		}
	case *network.EventWebSocketHandshakeResponseReceived:
		if x := l.current(ev.RequestID); x != nil {
			x.answer(ev.Response.Status, ev.Response.Headers, "")
		}
	case *network.EventWebSocketFrameError:
		if x := l.current(ev.RequestID); x != nil {
			x.Failed = ev.ErrorMessage
			if m := wsStatus.FindStringSubmatch(ev.ErrorMessage); m != nil && x.Status == 0 {
				x.Status, _ = strconv.ParseInt(m[1], 10, 64)
			}
		}
	case *network.EventLoadingFailed:
		if x := l.current(ev.RequestID); x != nil {
			x.Failed = ev.ErrorText
		}
	default:
		return
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *netlog) start(id network.RequestID, x *exchange) {
	l.all = append(l.all, x)
	l.hops[id] = append(l.hops[id], x)
	l.match(id)
}

func (l *netlog) current(id network.RequestID) *exchange {
	if hops := l.hops[id]; len(hops) > 0 {
		return hops[len(hops)-1]
	}
	return nil
}

// match gives each hop of id its cookies once both are known.
func (l *netlog) match(id network.RequestID) {
	hops, cookies := l.hops[id], l.sentCookies[id]
	for i := range min(len(hops), len(cookies)) {
		hops[i].Cookies = cookies[i]
	}
}

func (x *exchange) answer(status int64, h network.Headers, protocol string) {
	x.Status = status
	if protocol != "" {
		x.Protocol = protocol
	}
	for k, v := range h {
		if strings.EqualFold(k, "X-Served-By") {
			x.ServedBy, _ = v.(string)
		}
	}
}

// mark is where the log ends now: wait looks only at what comes after.
func (l *netlog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

// wait returns the latest exchange of method to url after mark once it
// has an answer (or failed) and, unless it is a WebSocket handshake, its
// cookies are known.
func (l *netlog) wait(t *testing.T, ctx context.Context, mark int, method, url string) exchange {
	t.Helper()
	for {
		l.mu.Lock()
		var last *exchange
		for _, x := range l.all[mark:] {
			if x.Method == method && x.URL == url {
				last = x
			}
		}
		if last != nil && (last.Status != 0 || last.Failed != "") && (last.Cookies != nil || last.WebSocket) {
			x := *last
			l.mu.Unlock()
			return x
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			if last != nil {
				t.Fatalf("%s %s: no answer or no cookies seen: %v (cookies known: %t)", method, url, last, last.Cookies != nil)
			}
			t.Fatalf("%s %s: never sent", method, url)
		}
	}
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (w *tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if over := w.buf.Len() - w.max; over > 0 {
		w.buf.Next(over)
	}
	return len(p), nil
}

func (w *tail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
