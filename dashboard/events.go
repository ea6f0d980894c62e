package dashboard

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// hub fans the catalog's changes out to the event streams. It never
// blocks on a client: publishing puts the changed items in each client's
// pending set, which keeps only the latest item per key (so a sandbox that
// changed ten times is sent once, in its final state) and is bounded by
// maxRows (past it the client is told to reload instead).
type hub struct {
	maxRows int
	// maxClients bounds the streams open at once (Options.MaxStreams).
	maxClients int
	// behind is how long a client may leave a reload untaken before it
	// is dropped.
	behind time.Duration

	mu      sync.Mutex
	clients map[*client]struct{}
}

// client is one event stream's pending changes.
type client struct {
	wake chan struct{} // cap 1: something is pending
	drop chan struct{} // closed when the client fell behind for good

	mu          sync.Mutex
	pending     map[resolver.Key]*item
	reload      bool      // pending overflowed: the page must reload instead
	reloadSince time.Time // when reload was set
	dropped     bool
	extensions  bool // the extensions catalog changed: see extensions_live.go
}

func newHub(maxRows, maxClients int, behind time.Duration) *hub {
	return &hub{maxRows: maxRows, maxClients: maxClients, behind: behind, clients: make(map[*client]struct{})}
}

// join adds a client; nil when maxClients are connected already.
func (h *hub) join() *client {
	c := &client{
		wake:    make(chan struct{}, 1),
		drop:    make(chan struct{}),
		pending: make(map[resolver.Key]*item),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) >= h.maxClients {
		return nil
	}
	h.clients[c] = struct{}{}
	return c
}

func (h *hub) leave(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

// size is the number of clients connected.
func (h *hub) size() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

func (h *hub) publish(changes []*item) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		c.add(changes, h.maxRows, h.behind, now)
	}
}

// add records changes for the client. A client whose pending set
// overflows gets a reload (its set is emptied: memory stays bounded); one
// that has not taken that reload after behind is not keeping up at all
// and is dropped (the page reconnects and loads afresh).
func (c *client) add(changes []*item, maxRows int, behind time.Duration, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.dropped:
		return
	case c.reload && now.Sub(c.reloadSince) > behind:
		c.dropped = true
		close(c.drop)
		return
	case c.reload:
		return // a reload covers these too
	}
	for _, it := range changes {
		c.pending[it.key()] = it
		if len(c.pending) > maxRows {
			c.reload, c.reloadSince = true, now
			clear(c.pending)
			break
		}
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take empties the pending set.
func (c *client) take() (items []*item, reload bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reload {
		c.reload = false
		return nil, true
	}
	items = make([]*item, 0, len(c.pending))
	for _, it := range c.pending {
		items = append(items, it)
	}
	clear(c.pending)
	return items, false
}

// update is the data of an "update" event: the changed rows the viewer may
// see, in their state when the message was written, and the overview.
type update struct {
	Generation uint64   `json:"generation"`
	Rows       []Row    `json:"rows"`
	Overview   overview `json:"overview"`
}

// serveEvents streams server-sent events until the request ends:
//   - "hello" once, with the overview (the page loads its data after it,
//     so nothing changes unseen between the two);
//   - "update" at most once per UpdateInterval, with the rows changed
//     since the previous one;
//   - "reload" when more changed than one message carries, or the client
//     fell behind: the page fetches its data again;
//   - a comment every Heartbeat, so proxies keep the stream open and a
//     dead client is noticed.
func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	// A one-sandbox page names its sandbox (namespace and name): a viewer
	// who may get it but not list its namespace follows it too.
	var follow *resolver.Key
	if q := r.URL.Query(); q.Has("namespace") || q.Has("name") {
		ns, name := q.Get("namespace"), q.Get("name")
		if !resolver.IsDNSLabel(ns) || !resolver.IsDNSLabel(name) {
			writeError(w, http.StatusBadRequest, "bad_key", "namespace and name must be DNS labels")
			return
		}
		follow = &resolver.Key{Namespace: ns, Name: name}
	}
	_, vis, ok := h.begin(w, r)
	if !ok {
		return
	}
	// Join before reading the view the hello carries: a change after that
	// read is pending already, so none falls between the two.
	c := h.hub.join()
	if c == nil {
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "too_many_streams", "the dashboard serves as many live pages as it may; try again soon")
		return
	}
	defer h.hub.leave(c)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	s := &stream{w: w, rc: http.NewResponseController(w), timeout: h.opts.WriteTimeout}

	ctx := r.Context()
	hello := h.current()
	if s.event("hello", update{Generation: hello.gen, Rows: []Row{}, Overview: h.overview(hello, vis)}, "retry: 3000\n") != nil {
		return
	}
	heartbeat := time.NewTicker(h.opts.Heartbeat)
	defer heartbeat.Stop()
	var last time.Time
	for {
		select {
		case <-c.drop:
			return
		default:
		}
		select {
		case <-ctx.Done():
			return
		case <-c.drop:
			return
		case <-heartbeat.C:
			// A token revoked or expired since the stream opened ends it
			// (the review is cached: cheap); the page reconnects, is
			// refused and goes to sign-in.
			if h.opts.Auth != nil {
				if _, err := h.signedIn(r); err != nil {
					return
				}
			}
			if s.write([]byte(": ping\n\n")) != nil {
				return
			}
			continue
		case <-c.wake:
		}
		// Coalesce: whatever arrives until the next slot goes in one
		// message.
		if wait := h.opts.UpdateInterval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-c.drop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		items, reload := c.take()
		var err error
		if reload {
			err = s.event("reload", struct{}{}, "")
		} else {
			err = h.sendUpdate(s, items, newVisibility(ctx, vis.viewer), follow)
		}
		if err == nil && c.takeExtensions() {
			err = s.event("extensions", struct{}{}, "")
		}
		if err != nil {
			return
		}
		last = time.Now()
	}
}

// sendUpdate writes the rows of items the viewer may see; nothing when it
// may see none of them.
func (h *Handler) sendUpdate(s *stream, items []*item, vis *visibility, follow *resolver.Key) error {
	v := h.current()
	rows := newRowMaker(h.sb, h.act, h.now())
	u := update{Generation: v.gen, Rows: make([]Row, 0, len(items))}
	for _, it := range items {
		if vis.may(it.res.Namespace) || follow != nil && !it.warm && it.res.Namespace == follow.Namespace &&
			it.res.Name == follow.Name && vis.mayGet(follow.Namespace, follow.Name) {
			u.Rows = append(u.Rows, rows.row(it))
		}
	}
	if len(u.Rows) == 0 {
		return nil
	}
	u.Overview = h.overview(v, vis)
	return s.event("update", u, "")
}

// stream writes events to one client; every write must finish within
// timeout, so a client that stopped reading is dropped rather than held.
type stream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     bytes.Buffer
}

func (s *stream) event(name string, data any, prefix string) error {
	s.buf.Reset()
	s.buf.WriteString(prefix)
	s.buf.WriteString("event: ")
	s.buf.WriteString(name)
	s.buf.WriteString("\ndata: ")
	// encoding/json escapes newlines inside strings, and its output ends
	// with the one newline the data line needs.
	if err := json.NewEncoder(&s.buf).Encode(data); err != nil {
		return err
	}
	s.buf.WriteString("\n")
	return s.write(s.buf.Bytes())
}

func (s *stream) write(b []byte) error {
	// Not every ResponseWriter supports deadlines (tests' do not); the
	// server's own timeouts then apply.
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}
