package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure New. Zero values take the documented defaults.
type Options struct {
	// Sandboxes is the resolver. Required.
	Sandboxes Sandboxes
	// Activity is the activator's view; nil shows no request counts.
	// When it also has the optional RequestCounts and EventLog methods,
	// the overview shows the busiest sandboxes and the one-sandbox view
	// its recent events.
	Activity Activity
	// Metrics is the router's own registry (prometheus.Registry is a
	// Gatherer): gathered once a minute for the last hour's resumes, idle
	// suspensions and resume latency on the overview. nil: not shown.
	Metrics prometheus.Gatherer
	// Extensions is the catalog of templates, warm pools and claims
	// (dashboard/kube's Catalog); nil: the pages say the extensions API
	// is not watched.
	Extensions Extensions
	// Viewer says who is looking, per request; nil: everyone sees
	// everything (only for a listener nobody else reaches). An error
	// answers 401, or 403 when it wraps ErrForbidden; a nil Viewer without
	// an error is refused too (403), so that a mistake never shows all.
	Viewer func(r *http.Request) (Viewer, error)
	// Auth turns sign-in on (signin.go): every API answer needs a
	// credential, an Authorization: Bearer header or the session cookie
	// that the sign-in page sets, and Auth says which Viewer it is. It and
	// Viewer are two ways of saying who is looking: set one at most.
	Auth Authenticator
	// SecureCookies marks the session cookie Secure (and gives it the
	// __Host- or __Secure- name form) even on a plain-HTTP connection:
	// for a dashboard behind a proxy that terminates TLS. A connection of
	// the dashboard's own over TLS gets them anyway.
	SecureCookies bool
	// SessionMaxAge is how long the browser keeps the session cookie
	// (default 8h); the token inside may stop working sooner.
	SessionMaxAge time.Duration

	// Prefix is the path everything is served under: "/" (default) on a
	// listener of its own, "/dashboard/" on a shared one. It starts and
	// ends with a slash.
	Prefix string
	// RouterURL is the router's data-plane URL the curl examples use
	// (default http://localhost:8080): http or https, no query.
	RouterURL string
	// BaseDomain, when the router routes by host name (its first
	// --base-domain), adds a curl example through <name>.<namespace>.<it>
	// on the RouterURL's scheme and port.
	BaseDomain string

	// UpdateInterval is the least time between two event messages to one
	// client (default 250ms): the changes of the meantime go together.
	UpdateInterval time.Duration
	// MaxEventRows bounds the changes pending for one client (default
	// 100); past it the client gets "reload" instead of rows.
	MaxEventRows int
	// Heartbeat is how often an idle event stream gets a comment (default
	// 15s).
	Heartbeat time.Duration
	// MaxStreams bounds the event streams open at once (default 1024):
	// each is a goroutine and a bounded pending set; past it a page gets
	// 503 and its EventSource tries again later.
	MaxStreams int
	// WriteTimeout is how far an event stream may fall behind (default
	// 10s): a write that takes longer, or a reload the client has not
	// taken within it, drops the client (the page reconnects and loads
	// afresh).
	WriteTimeout time.Duration

	Log *slog.Logger
	// Now is the clock for time left before suspension (tests); default
	// time.Now.
	Now func() time.Time
}

// applyInterval is the least time between two generations of the catalog:
// the feed coalesces meanwhile, so a storm of changes costs at most ten
// rebuilds a second (each a copy of the item pointers).
const applyInterval = 100 * time.Millisecond

// Handler serves the dashboard: pages, JSON API and event stream, all
// under Options.Prefix. Run must run for it to answer (503 until the
// first snapshot is loaded).
type Handler struct {
	opts Options
	sb   Sandboxes
	act  Activity
	ext  Extensions // nil: not watched
	// pools are every warm pool, read once per recentFor for all pages'
	// overviews.
	pools     recent[[]WarmPool]
	log       *slog.Logger
	routerURL string
	prefix    string // without the trailing slash; "" for "/"
	mux       *http.ServeMux
	cat       *catalog
	hub       *hub
	stats     *stats
	// lastActivity reads a sandbox's last activity for the sort by it.
	lastActivity  lastActivityFunc
	applyInterval time.Duration
	running       atomic.Bool
}

// New checks opts and builds the handler; Run feeds it.
func New(opts Options) (*Handler, error) {
	if opts.Sandboxes == nil {
		return nil, errors.New("dashboard: Sandboxes is required")
	}
	opts.Prefix = cmp.Or(opts.Prefix, "/")
	if !strings.HasPrefix(opts.Prefix, "/") || !strings.HasSuffix(opts.Prefix, "/") || strings.ContainsAny(opts.Prefix, "?#%{} ") {
		return nil, fmt.Errorf("dashboard: Prefix %q must start and end with / and be a plain path", opts.Prefix)
	}
	routerURL, err := checkRouterURL(cmp.Or(opts.RouterURL, "http://localhost:8080"))
	if err != nil {
		return nil, err
	}
	opts.UpdateInterval = cmp.Or(opts.UpdateInterval, 250*time.Millisecond)
	opts.MaxEventRows = cmp.Or(opts.MaxEventRows, 100)
	opts.MaxStreams = cmp.Or(opts.MaxStreams, 1024)
	opts.Heartbeat = cmp.Or(opts.Heartbeat, 15*time.Second)
	opts.WriteTimeout = cmp.Or(opts.WriteTimeout, 10*time.Second)
	if opts.UpdateInterval < 0 || opts.MaxEventRows < 0 || opts.MaxStreams < 0 || opts.Heartbeat < 0 || opts.WriteTimeout < 0 {
		return nil, errors.New("dashboard: intervals and bounds must not be negative")
	}
	if opts.BaseDomain != "" && !isDNSName(opts.BaseDomain) {
		return nil, fmt.Errorf("dashboard: BaseDomain %q is not a DNS name", opts.BaseDomain)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Auth != nil && opts.Viewer != nil {
		return nil, errors.New("dashboard: set Auth or Viewer, not both")
	}
	opts.SessionMaxAge = cmp.Or(opts.SessionMaxAge, DefaultSessionMaxAge)
	if opts.SessionMaxAge < time.Second {
		return nil, errors.New("dashboard: SessionMaxAge must be at least a second")
	}
	h := &Handler{
		opts:          opts,
		sb:            opts.Sandboxes,
		act:           newSharedActivity(opts.Activity),
		ext:           opts.Extensions,
		log:           cmp.Or(opts.Log, slog.New(slog.DiscardHandler)),
		routerURL:     routerURL,
		prefix:        strings.TrimSuffix(opts.Prefix, "/"),
		cat:           newCatalog(opts.Sandboxes),
		hub:           newHub(opts.MaxEventRows, opts.MaxStreams, opts.WriteTimeout),
		stats:         newStats(opts.Activity, opts.Metrics, cmp.Or(opts.Log, slog.New(slog.DiscardHandler))),
		lastActivity:  lastActivity(opts.Sandboxes, opts.Activity),
		applyInterval: applyInterval,
	}
	if h.ext != nil {
		h.pools = recent[[]WarmPool]{read: func() []WarmPool { return h.ext.WarmPools("") }, now: time.Now}
	}
	h.mux = h.routes()
	return h, nil
}

// checkRouterURL accepts an http(s) URL made of characters that need no
// quoting in a shell command, since it is pasted into curl examples.
func checkRouterURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("dashboard: RouterURL %q must be an http or https URL without query", s)
	}
	out := strings.TrimSuffix(u.String(), "/")
	for _, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~:/[]%", c)) {
			return "", fmt.Errorf("dashboard: RouterURL %q has a character a shell would need quoted", s)
		}
	}
	return out, nil
}

func (h *Handler) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/overview", h.serveOverview)
	mux.HandleFunc("GET /api/sandboxes", h.serveTable)
	mux.HandleFunc("GET /api/sandboxes/{namespace}/{name}", h.serveSandbox)
	mux.HandleFunc("GET /api/events", h.serveEvents)
	h.sessionRoutes(mux)
	mux.HandleFunc("GET /api/kinds", h.serveKinds)
	mux.HandleFunc("GET /api/warmpools", h.serveWarmPools)
	mux.HandleFunc("GET /api/templates", h.serveTemplates)
	mux.HandleFunc("GET /api/claims", h.serveClaims)
	mux.HandleFunc("GET /api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such API")
	})
	h.pageRoutes(mux)
	return mux
}

// ServeHTTP serves everything under the prefix, with the security headers
// every answer carries.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	p := r.URL.Path
	switch {
	case h.prefix != "" && p == h.prefix:
		// Relative links need the trailing slash.
		http.Redirect(w, r, h.prefix+"/", http.StatusMovedPermanently)
	case !strings.HasPrefix(p, h.prefix+"/"):
		writeError(w, http.StatusNotFound, "not_found", "not a dashboard path")
	case h.prefix == "":
		h.mux.ServeHTTP(w, r)
	default:
		http.StripPrefix(h.prefix, h.mux).ServeHTTP(w, r)
	}
}

// securityHeaders: only the dashboard's own files may run or load, nothing
// may frame it, nothing is sniffed, nothing leaks in a Referer.
func securityHeaders(hd http.Header) {
	hd.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// Run keeps the dashboard's catalog current from one subscription to the
// resolver's feed, shared by every page and event stream, until ctx ends
// (then it returns nil). It must be called once.
func (h *Handler) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("dashboard: Run called twice")
	}
	if h.stats.enabled() {
		statsCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.stats.run(statsCtx)
		}()
		defer func() { stop(); <-done }() // Run returns after the samplers
	}
	// Subscribe first: a change during the snapshot is then in the feed.
	feed := h.sb.Subscribe()
	defer feed.Close()
	defer h.relayExtensions(ctx)()
	v := h.cat.load()
	h.log.Info("dashboard catalog loaded", "items", len(v.items))
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		keys, err := feed.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dashboard: resolver feed: %w", err)
		}
		if changes := h.cat.apply(keys); len(changes) > 0 {
			h.hub.publish(changes)
		}
		t.Reset(h.applyInterval)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// current is the catalog's latest generation; nil before Run loaded it.
func (h *Handler) current() *view { return h.cat.cur.Load() }

func (h *Handler) now() time.Time { return h.opts.Now() }

// begin does what every API answer starts with: find out who is asking,
// and take the current generation. It has answered when it returns false.
func (h *Handler) begin(w http.ResponseWriter, r *http.Request) (*view, *visibility, bool) {
	viewer, ok := h.viewer(w, r)
	if !ok {
		return nil, nil, false
	}
	v := h.current()
	if v == nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "starting", "the dashboard is loading its data")
		return nil, nil, false
	}
	return v, newVisibility(r.Context(), viewer), true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers the router's error shape: {"detail", "code"}.
func writeError(w http.ResponseWriter, status int, code, detail string) {
	writeJSON(w, status, struct {
		Detail string `json:"detail"`
		Code   string `json:"code"`
	}{detail, code})
}
