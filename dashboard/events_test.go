package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// sseClient reads an event stream and keeps what a page would: the last
// state of every row, and counts of what arrived.
type sseClient struct {
	mu        sync.Mutex
	hello     bool
	updates   int
	reloads   int
	comments  int
	states    map[string]string // "namespace/name" -> state ("" once removed)
	overview  overview
	maxRows   int
	sawHidden []string
	hide      string
	done      chan struct{}
}

func dial(t *testing.T, url, hide string) (*sseClient, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/events", nil)
	if hide != "" {
		req.Header.Set("X-Hide", hide)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	c := &sseClient{states: make(map[string]string), hide: hide, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var event, data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				c.dispatch(t, event, data)
				event, data = "", ""
			case strings.HasPrefix(line, ":"):
				c.mu.Lock()
				c.comments++
				c.mu.Unlock()
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	eventually(t, "hello", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.hello })
	return c, cancel
}

func (c *sseClient) dispatch(t *testing.T, event, data string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch event {
	case "hello":
		c.hello = true
	case "reload":
		c.reloads++
	case "update":
		var u update
		if err := json.Unmarshal([]byte(data), &u); err != nil {
			t.Errorf("update %q: %v", data, err)
			return
		}
		c.updates++
		c.overview = u.Overview
		c.maxRows = max(c.maxRows, len(u.Rows))
		for _, r := range u.Rows {
			if c.hide != "" && r.Namespace == c.hide {
				c.sawHidden = append(c.sawHidden, r.Name)
			}
			st := r.State
			if r.Removed {
				st = ""
			}
			c.states[r.Namespace+"/"+r.Name] = st
		}
	}
}

func (c *sseClient) has(want map[string]string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range want {
		if c.states[k] != v {
			return false
		}
	}
	return true
}

func headerViewer(r *http.Request) (Viewer, error) { return hiding(r.Header.Get("X-Hide")), nil }

// startWith is start with a chance to change the handler before Run.
func startWith(t *testing.T, opts Options, tweak func(*Handler)) *Handler {
	t.Helper()
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	tweak(h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "the first snapshot", func() bool { return h.current() != nil })
	return h
}

// TestEventsCoalesce: 100 state changes a second for 2s reach every client
// as at most one message per interval (about ten in all), every final
// state arrives, all from one subscription to the feed, and the hidden
// namespace never shows.
func TestEventsCoalesce(t *testing.T) {
	fr := newFakeResolver()
	for i := range 50 {
		fr.set(inState(resolver.StateSuspended, "load", fmt.Sprintf("sb-%02d", i), fmt.Sprintf("u%d", i)))
	}
	fr.set(inState(resolver.StateSuspended, "secret", "hidden", "u-hidden"))
	const interval = 250 * time.Millisecond
	h := start(t, Options{Sandboxes: fr, Viewer: headerViewer, UpdateInterval: interval})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	clients := []*sseClient{}
	for _, hide := range []string{"", "secret", "secret"} {
		c, _ := dial(t, srv.URL, hide)
		clients = append(clients, c)
	}

	states := []resolver.State{resolver.StateRunning, resolver.StateSuspending, resolver.StateSuspended, resolver.StateStarting}
	final := map[string]string{}
	tick := time.NewTicker(10 * time.Millisecond)
	began := time.Now()
	for i := range 200 {
		<-tick.C
		name := fmt.Sprintf("sb-%02d", i%50)
		st := states[(i/50)%len(states)]
		if i%50 == 7 {
			fr.remove("load", name)
			final["load/"+name] = ""
		} else {
			fr.set(inState(st, "load", name, fmt.Sprintf("u%d", i%50)))
			final["load/"+name] = st.String()
		}
		if i%10 == 0 {
			fr.set(inState(states[i%4], "secret", "hidden", "u-hidden"))
		}
	}
	tick.Stop()
	elapsed := time.Since(began)

	for i, c := range clients {
		eventually(t, fmt.Sprintf("client %d's final states", i), func() bool { return c.has(final) })
	}
	// Messages are at least an interval apart, the first goes at the first
	// change and the last at most an interval after the last change is
	// applied (itself at most applyInterval late): (elapsed +
	// applyInterval)/interval + 2 bounds them however slow the machine
	// (slowness only stretches elapsed). At 2s that is 10.
	limit := int((elapsed+applyInterval)/interval) + 2
	for i, c := range clients {
		c.mu.Lock()
		t.Logf("client %d: %d updates (limit %d) over %v, largest %d rows, %d reloads", i, c.updates, limit, elapsed.Round(time.Millisecond), c.maxRows, c.reloads)
		if c.updates > limit || c.updates == 0 {
			t.Errorf("client %d: %d updates, want 1..%d", i, c.updates, limit)
		}
		if c.reloads != 0 {
			t.Errorf("client %d: %d reloads under 100 changes a second", i, c.reloads)
		}
		if len(c.sawHidden) > 0 {
			t.Errorf("client %d saw the hidden namespace: %v", i, c.sawHidden)
		}
		if c.hide != "" && c.overview.Namespaces != 1 {
			t.Errorf("client %d: overview counts %d namespaces, want 1", i, c.overview.Namespaces)
		}
		c.mu.Unlock()
	}
	if _, seen := clients[0].states["secret/hidden"]; !seen {
		t.Error("the unrestricted client never saw the namespace the others may not")
	}
	if n := fr.subscribes.Load(); n != 1 {
		t.Errorf("%d subscriptions to the feed, want one shared by all clients", n)
	}
}

// blockingWriter is a client that stopped reading: every write waits for
// release.
type blockingWriter struct {
	header  http.Header
	release chan struct{}
	mu      sync.Mutex
	body    strings.Builder
}

func (w *blockingWriter) Header() http.Header { return w.header }
func (w *blockingWriter) WriteHeader(int)     {}
func (w *blockingWriter) Flush()              {}
func (w *blockingWriter) Write(b []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.body.Write(b)
}

// TestSlowClientIsDroppedAndBlocksNobody: a client that does not read
// holds a bounded set of pending changes, gets a reload, and is dropped
// when it stays behind; a client beside it gets every change meanwhile.
func TestSlowClientIsDroppedAndBlocksNobody(t *testing.T) {
	fr := newFakeResolver()
	for i := range 100 {
		fr.set(inState(resolver.StateSuspended, "ns", fmt.Sprintf("sb-%03d", i), fmt.Sprintf("u%d", i)))
	}
	const maxRows = 20
	h := startWith(t, Options{Sandboxes: fr, UpdateInterval: 5 * time.Millisecond, MaxEventRows: maxRows, WriteTimeout: 50 * time.Millisecond},
		func(h *Handler) { h.applyInterval = time.Millisecond })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	slow := &blockingWriter{header: http.Header{}, release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slowDone := make(chan struct{})
	go func() {
		defer close(slowDone)
		h.ServeHTTP(slow, httptest.NewRequest(http.MethodGet, "/api/events", nil).WithContext(ctx))
	}()
	eventually(t, "the slow client to join", func() bool { return h.hub.size() == 1 })
	fast, _ := dial(t, srv.URL, "")

	for i := range 100 {
		name := fmt.Sprintf("sb-%03d", i)
		fr.set(inState(resolver.StateRunning, "ns", name, fmt.Sprintf("u%d", i)))
		eventually(t, "the fast client to see "+name, func() bool { return fast.has(map[string]string{"ns/" + name: "running"}) })
		h.hub.mu.Lock()
		for c := range h.hub.clients {
			c.mu.Lock()
			if len(c.pending) > maxRows {
				t.Errorf("a client holds %d pending changes, more than %d", len(c.pending), maxRows)
			}
			c.mu.Unlock()
		}
		h.hub.mu.Unlock()
	}
	close(slow.release)
	select {
	case <-slowDone:
	case <-time.After(15 * time.Second):
		t.Fatal("the slow client was not dropped")
	}
	if strings.Contains(slow.body.String(), "event: update") {
		t.Errorf("the dropped client got updates: %q", slow.body.String())
	}
	eventually(t, "the hub to forget the slow client", func() bool { return h.hub.size() == 1 })
	fast.mu.Lock()
	defer fast.mu.Unlock()
	if fast.reloads != 0 {
		t.Errorf("the fast client got %d reloads", fast.reloads)
	}
}

// TestEventsReloadWhenTooMuchChanged: more changes in one interval than a
// message carries make a reload, and rows follow again after it.
func TestEventsReloadWhenTooMuchChanged(t *testing.T) {
	fr := newFakeResolver()
	h := start(t, Options{Sandboxes: fr, MaxEventRows: 5, UpdateInterval: 20 * time.Millisecond, Heartbeat: 10 * time.Millisecond})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, cancel := dial(t, srv.URL, "")
	// Twenty changes at once reach the catalog in one batch or two (the
	// apply loop waits between batches): more than five in one of them.
	fr.mu.Lock()
	for i := range 20 {
		r := inState(resolver.StateRunning, "ns", fmt.Sprintf("sb-%02d", i), fmt.Sprintf("u%d", i))
		fr.sandboxes[nsName{"ns", r.Name}] = r
		fr.fire(key("ns", r.Name))
	}
	fr.mu.Unlock()
	eventually(t, "a reload", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.reloads >= 1 })
	// Once everything is applied and the reload is taken, changes come as
	// rows again (before, a pending reload covers them).
	eventually(t, "the reload taken", func() bool {
		if len(h.current().items) != 20 {
			return false
		}
		h.hub.mu.Lock()
		defer h.hub.mu.Unlock()
		for cl := range h.hub.clients {
			cl.mu.Lock()
			pending := cl.reload
			cl.mu.Unlock()
			if pending {
				return false
			}
		}
		return true
	})
	fr.set(inState(resolver.StateSuspended, "ns", "sb-03", "u3"))
	eventually(t, "rows after the reload", func() bool { return c.has(map[string]string{"ns/sb-03": "suspended"}) })
	eventually(t, "heartbeats", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.comments >= 2 })

	// The stream ends with the request.
	cancel()
	eventually(t, "the client to leave", func() bool { return h.hub.size() == 0 })
}
