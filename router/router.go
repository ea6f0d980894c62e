package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/sandboxhost"
)

// Resolver answers which pod serves a sandbox. Lookups happen on every
// request and must be fast and allocation-free on a hit.
type Resolver interface {
	Lookup(key resolver.Key) resolver.Result
	// Synced reports whether the resolver has a complete view; until then
	// an unknown sandbox is "not ready yet", not "not found".
	Synced() bool
}

// Access decides whether a request may reach the sandbox it names. It
// admits it with a release, called once the request has ended (a stream
// or WebSocket: once it closed), which frees what the request held
// (a place under a concurrency limit). A refusal is a StatusError (401,
// 403, 429, 503), whose WWWAuthenticate() string, if it has one, is sent
// as the challenge; a client that left gets its context's error. It runs
// before the sandbox is looked up, so a refused caller learns nothing of
// the sandbox, not even whether it exists.
// sessionPath is where a browser session for the request may live: "/"
// for a sandbox named in the host name (its own origin), the sandbox's
// path prefix for a path-routed one, "" on the router's shared host
// (none). r is the request as the sandbox will see it (a path-routed
// one's prefix removed).
type Access interface {
	Check(ctx context.Context, r *http.Request, sandbox resolver.Key, port uint16, sessionPath string) (access.Admission, error)
}

// Activator brings a sandbox that is not running to a state where it can
// take the request: it holds the request, resumes the sandbox, and returns
// the running Result, or an error (a StatusError for a precise answer).
// The router calls release (when not nil) once the released request has
// its response head or failed, so the activator can cap how many released
// requests hit a pod that just started.
type Activator interface {
	Activate(ctx context.Context, key resolver.Key, port uint16, current resolver.Result) (res resolver.Result, release func(), err error)
}

// ActivityTracker learns of every request to a known sandbox, from its
// start to its end (an upgraded connection or a stream until it closes),
// so that busy sandboxes are not suspended.
type ActivityTracker interface {
	Begin(key resolver.Key) Activity
}

// Activity is one request's mark on its sandbox; End is called once.
type Activity interface {
	End()
}

// ErrorEvents learns of the requests to a known sandbox that the router
// answered with an error of its own because the sandbox failed them (502
// or 504 from the upstream attempt), so that people looking at the
// sandbox can see it. It is called on that error path only.
type ErrorEvents interface {
	SandboxError(key resolver.Key, status int, code string)
}

// PodIPMode says what the router does with a client's X-Sandbox-Pod-IP.
type PodIPMode uint8

const (
	// PodIPResolver validates the header and then routes to the resolver's
	// endpoint, so a client can never make the router dial an address of
	// its choosing. The default.
	PodIPResolver PodIPMode = iota
	// PodIPDirect dials the client's address (after validation) as the
	// legacy router did, but only inside Options.PodCIDRs; for
	// deployments that trust their clients.
	PodIPDirect
	// PodIPOff ignores the header entirely.
	PodIPOff
)

// Options configure a Router. Zero values take the documented defaults.
type Options struct {
	Resolver  Resolver
	Access    Access          // nil: everyone reaches every sandbox
	Activator Activator       // nil: non-running sandboxes are answered 503 with their state
	Activity  ActivityTracker // nil: activity is not tracked
	// ErrorEvents hears of upstream failures per sandbox; nil: nobody.
	ErrorEvents ErrorEvents

	// BaseDomains enable host-based routing (<port>-<id>.<ns>.<base>).
	BaseDomains []string
	// PathRoutingPrefix enables path routing: <prefix>/<ns>/<id>/<port>/
	// <rest> reaches that sandbox port with path /<rest>, for clusters
	// without wildcard DNS. It starts with "/" and does not end with one.
	PathRoutingPrefix string
	PodIPMode         PodIPMode
	// PodCIDRs bound the addresses PodIPDirect may dial (the cluster's pod
	// network). Empty: direct dialing is refused.
	PodCIDRs []netip.Prefix
	// AllowLoopbackPodIP admits loopback pod addresses (tests, local demo).
	AllowLoopbackPodIP bool
	// TrustedProxies may supply X-Forwarded-* headers that are kept.
	TrustedProxies []netip.Prefix
	// Mint serves access.MintPath on the router's own host (a request
	// that names no sandbox): short-lived scoped tokens for callers
	// Kubernetes lets reach a sandbox. nil: not served.
	Mint http.Handler
	// MCP serves every request whose Host is one of MCPHosts (the MCP
	// endpoint, package mcp), before anything of the data plane: it
	// authenticates its callers itself. nil: not served.
	MCP      http.Handler
	MCPHosts []string
	// IdentityHeaders tells the sandbox who called: X-Sandbox-Caller-User,
	// -Groups and -Auth, from what Access admitted the request on. Clients'
	// copies never pass, whether on or off (every X-Sandbox-* header is
	// the router's).
	IdentityHeaders bool
	// ForwardAuthorization passes the client's Authorization header to the
	// sandbox. Off by default: credentials for the router are not the
	// sandbox's business.
	ForwardAuthorization bool
	// SessionCookie is the name of Access's browser session cookie (and
	// "__Host-" or "__Secure-" + it): removed from the Cookie header the
	// sandbox gets.
	// EntryParam, the query parameter of entry links: removed from the
	// query the sandbox gets.
	SessionCookie string
	EntryParam    string
	// CredentialCookies are more cookies that carry credentials for the
	// router's own services (the dashboard's sign-in cookie: browsers send
	// a host's cookies to every port of it), removed like SessionCookie.
	CredentialCookies []string
	// MaxRequestBodyBytes rejects larger request bodies with 413; 0 = no limit.
	MaxRequestBodyBytes int64
	// MaxClientTimeout caps the deadline a client asks for with
	// X-Sandbox-Timeout (default 1h); longer requests get this one.
	MaxClientTimeout time.Duration

	Pool PoolOptions
	// MaxTunnels caps the open tunnels (WebSocket and other upgraded
	// connections); an upgrade past it is answered 503 tunnel_limit
	// before it reaches the sandbox. 0: no cap.
	MaxTunnels int
	// MaxUpstreamConns caps the connections open to sandboxes, pooled,
	// h2c and tunnels together: each is a file descriptor. At the cap an
	// idle pooled connection is closed to make room, else the request is
	// answered 503 upstream_connection_limit. 0: no cap.
	MaxUpstreamConns int
	// ResponseHeaderTimeout bounds the wait for the sandbox's response
	// head; 0 = no limit (agents may think for minutes before answering).
	ResponseHeaderTimeout time.Duration
	// DialRetries is how many times a failed connect is retried (default 3).
	DialRetries int
	// RetryBackoff is the first retry's delay, doubled each time (default 25ms).
	RetryBackoff time.Duration

	Metrics        *Metrics
	AccessLog      io.Writer // one JSON line per request; nil: no access log
	TracerProvider trace.TracerProvider
	Log            *slog.Logger
}

// Router is the data-plane HTTP handler: it routes each request to its
// sandbox and proxies it.
type Router struct {
	opts     Options
	resolver Resolver
	keys     keyParser
	forward  forwardPolicy
	pool     *connPool
	h2c      *http.Transport
	metrics  *Metrics
	tracing  *tracing
	log      *slog.Logger

	limits   limits
	dialer   net.Dialer // to sandboxes, through dialUpstream
	warnings *budgetWarnings

	tunnelsMu sync.Mutex
	tunnels   map[*tunnel]struct{} // nil once CloseUpgraded ran

	accessLogBroken atomic.Bool // the first access-log failure was logged
}

// New builds a Router; Close releases its connections.
func New(opts Options) (*Router, error) {
	if opts.Resolver == nil {
		return nil, errors.New("router: Resolver is required")
	}
	opts.Pool.setDefaults()
	if opts.MaxClientTimeout <= 0 {
		opts.MaxClientTimeout = DefaultMaxClientTimeout
	}
	if opts.DialRetries < 0 {
		opts.DialRetries = 0
	} else if opts.DialRetries == 0 {
		opts.DialRetries = 3
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = 25 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		return nil, errors.New("router: Metrics is required")
	}
	if p := opts.PathRoutingPrefix; p != "" && !ValidPathPrefix(p) {
		return nil, fmt.Errorf("router: path routing prefix %q must be /<segment>[/<segment>...] of letters, digits, '-', '_', '.' and '~', without a trailing /", p)
	}
	rt := &Router{
		opts:     opts,
		resolver: opts.Resolver,
		keys: keyParser{
			baseDomains:        sandboxhost.NewDomains(opts.BaseDomains),
			allowLoopbackPodIP: opts.AllowLoopbackPodIP,
			ignorePodIP:        opts.PodIPMode == PodIPOff,
			pathPrefix:         opts.PathRoutingPrefix,
		},
		forward: forwardPolicy{trustedProxies: opts.TrustedProxies, forwardAuthorization: opts.ForwardAuthorization,
			credentialCookies: credentialCookies(opts)},
		metrics: opts.Metrics,
		tracing: newTracing(opts.TracerProvider),
		log:     opts.Log,
		tunnels: make(map[*tunnel]struct{}),
	}
	rt.limits.tunnels.max = int64(max(opts.MaxTunnels, 0))
	rt.limits.upstream.max = int64(max(opts.MaxUpstreamConns, 0))
	rt.warnings = newBudgetWarnings(10 * time.Second)
	rt.metrics.connLimits.WithLabelValues("tunnel").Set(float64(rt.limits.tunnels.max))
	rt.metrics.connLimits.WithLabelValues("upstream").Set(float64(rt.limits.upstream.max))
	rt.dialer = net.Dialer{Timeout: opts.Pool.DialTimeout, KeepAlive: 30 * time.Second}
	rt.pool = newConnPool(opts.Pool, opts.Metrics, rt.dialUpstream)
	rt.h2c = newH2CTransport(opts.Pool, opts.ResponseHeaderTimeout, rt.dialUpstream)
	return rt, nil
}

// Close drops idle upstream connections. It does not touch requests in
// flight; see CloseUpgraded for the end of a drain.
func (rt *Router) Close() {
	rt.pool.close()
	rt.h2c.CloseIdleConnections()
}

// ServeHTTP is one request, top to bottom: its routing key (key.go), the
// checks of the request itself (request.go), the sandbox's endpoint,
// through the activator when it is not running (target.go), the exchange
// with the sandbox (forward.go), retried when it provably did not reach
// it, and the answer when the router answers itself (errors.go). The
// bookkeeping (record.go) runs however the request ends, a panic included.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rec record
	r = rt.begin(r, &rec)
	defer rt.end(r, &rec)
	rt.serve(w, r, &rec)
	rec.served = true
	if rec.abort {
		panic(http.ErrAbortHandler)
	}
}

func (rt *Router) serve(w http.ResponseWriter, r *http.Request, rec *record) {
	if rt.opts.MCP != nil && rt.isMCPHost(r.Host) {
		rt.serveOwn(w, r, rec, rt.opts.MCP)
		return
	}
	key, kerr := rt.keys.parse(r)
	if kerr != nil {
		// A request that names no sandbox may be for the router itself.
		switch {
		case kerr == errMissingID && r.URL.Path == "/healthz":
			rec.status = http.StatusOK
			writeHealth(w)
			return
		case kerr == errMissingID && r.URL.Path == access.MintPath && rt.opts.Mint != nil:
			rt.serveOwn(w, r, rec, rt.opts.Mint)
			return
		}
		rt.answer(w, r, rec, &httpError{status: http.StatusBadRequest, code: kerr.code, detail: kerr.detail})
		return
	}
	rec.key = key
	r = withoutPathPrefix(r, &key)

	r, cancel, herr := rt.admit(w, r, rec)
	if herr != nil {
		rt.answer(w, r, rec, herr)
		return
	}
	defer cancel()
	ctx := r.Context()

	if rt.opts.Access != nil {
		adm, err := rt.opts.Access.Check(ctx, r, key.Key, key.Port, key.sessionPath())
		if err != nil {
			rt.answer(w, r, rec, err)
			return
		}
		rec.accessRelease, rec.caller = adm.Release, adm.Caller
		r = rt.withoutEntryParam(r)
	}

	var retry retryState
	for {
		target, err := rt.target(ctx, key, rec)
		if err != nil {
			rt.answer(w, r, rec, err)
			return
		}
		target.fresh = retry.fresh
		rec.upstream = target.addr
		err = rt.forwardOnce(ctx, w, r, &target, rec)
		if err == nil {
			return
		}
		var he *httpError
		if errors.As(err, &he) {
			rt.answer(w, r, rec, he)
			return
		}
		var ae *attemptError
		if !errors.As(err, &ae) {
			ae = &attemptError{failUpstream, err}
		}
		rt.metrics.upstreamError(ae.kind)
		if rt.shouldRetry(ctx, ae, &retry) {
			rec.retries++
			rt.metrics.retries.Inc()
			continue
		}
		rt.answerAttempt(w, r, rec, ae)
		return
	}
}

// serveOwn serves a request for one of the router's own endpoints (the
// minting endpoint, MCP), noting its status for the access log.
func (rt *Router) serveOwn(w http.ResponseWriter, r *http.Request, rec *record, h http.Handler) {
	sw := &statusWriter{ResponseWriter: w}
	h.ServeHTTP(sw, r)
	rec.status = sw.status
}

// isMCPHost reports whether host (with or without a port) is one of
// Options.MCPHosts, compared without regard to case.
func (rt *Router) isMCPHost(host string) bool {
	// A DNS name, so no brackets to mind; and no SplitHostPort, whose
	// error for a host without a port would allocate on every request.
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	for _, m := range rt.opts.MCPHosts {
		if strings.EqualFold(host, m) {
			return true
		}
	}
	return false
}

// retryState is what one request's retries used up.
type retryState struct {
	// dials counts the failed connects (and unanswered new connections)
	// retried so far.
	dials int
	// stale: the one retry after a stale pooled connection is spent. A
	// pooled connection that died unanswered most likely died with its
	// server (a pod stopping closes them all at once), and the others to
	// it were parked too briefly to be probed: from then on every attempt
	// dials (fresh), so the retry cannot meet the same fate.
	stale, fresh bool
}

// shouldRetry applies the retry rule: a failed connect (never sent), or a
// new connection dropped before any response byte for a request that may
// be sent twice, up to DialRetries times with jittered exponential backoff
// inside the request's deadline; a stale keep-alive connection once per
// request, at once, whichever attempt met it. The two budgets are apart: a stale connection
// does not use up a connect retry, nor the reverse.
func (rt *Router) shouldRetry(ctx context.Context, ae *attemptError, st *retryState) bool {
	switch ae.kind {
	case failStale:
		if st.stale {
			return false
		}
		st.stale, st.fresh = true, true
		return true
	case failDial, failReset:
		if st.dials >= rt.opts.DialRetries {
			return false
		}
		d := rt.opts.RetryBackoff << st.dials
		st.dials++
		d = d/2 + rand.N(d/2+1)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return false
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	return false
}
