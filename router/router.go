package router

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http/httpguts"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Resolver answers which pod serves a sandbox. Lookups happen on every
// request and must be fast and allocation-free on a hit.
type Resolver interface {
	Lookup(key resolver.Key) resolver.Result
	// Synced reports whether the resolver has a complete view; until then
	// an unknown sandbox is "not ready yet", not "not found".
	Synced() bool
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
	Activator Activator       // nil: non-running sandboxes are answered 503 with their state
	Activity  ActivityTracker // nil: activity is not tracked

	// BaseDomains enable host-based routing (<port>-<id>.<ns>.<base>).
	BaseDomains []string
	PodIPMode   PodIPMode
	// PodCIDRs bound the addresses PodIPDirect may dial (the cluster's pod
	// network). Empty: direct dialing is refused.
	PodCIDRs []netip.Prefix
	// AllowLoopbackPodIP admits loopback pod addresses (tests, local demo).
	AllowLoopbackPodIP bool
	// TrustedProxies may supply X-Forwarded-* headers that are kept.
	TrustedProxies []netip.Prefix
	// ForwardAuthorization passes the client's Authorization header to the
	// sandbox. Off by default: credentials for the router are not the
	// sandbox's business.
	ForwardAuthorization bool
	// MaxRequestBodyBytes rejects larger request bodies with 413; 0 = no limit.
	MaxRequestBodyBytes int64

	Pool PoolOptions
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

	upgradesMu sync.Mutex
	upgrades   map[*upgradedConn]struct{}
}

// New builds a Router; Close releases its connections.
func New(opts Options) (*Router, error) {
	if opts.Resolver == nil {
		return nil, errors.New("router: Resolver is required")
	}
	if opts.Pool.MaxIdlePerEndpoint <= 0 {
		opts.Pool.MaxIdlePerEndpoint = 64
	}
	if opts.Pool.MaxIdleTotal <= 0 {
		opts.Pool.MaxIdleTotal = 10000
	}
	if opts.Pool.IdleTimeout <= 0 {
		opts.Pool.IdleTimeout = 30 * time.Second
	}
	if opts.Pool.DialTimeout <= 0 {
		opts.Pool.DialTimeout = 3 * time.Second
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
	rt := &Router{
		opts:     opts,
		resolver: opts.Resolver,
		keys: keyParser{
			baseDomains:        normalizeDomains(opts.BaseDomains),
			allowLoopbackPodIP: opts.AllowLoopbackPodIP,
			ignorePodIP:        opts.PodIPMode == PodIPOff,
		},
		forward:  forwardPolicy{trustedProxies: opts.TrustedProxies, forwardAuthorization: opts.ForwardAuthorization},
		pool:     newConnPool(opts.Pool),
		h2c:      newH2CTransport(opts.Pool, opts.ResponseHeaderTimeout),
		metrics:  opts.Metrics,
		tracing:  newTracing(opts.TracerProvider),
		log:      opts.Log,
		upgrades: make(map[*upgradedConn]struct{}),
	}
	return rt, nil
}

// Close drops idle upstream connections. It does not touch requests in
// flight; see CloseUpgraded for the end of a drain.
func (rt *Router) Close() {
	rt.pool.close()
	rt.h2c.CloseIdleConnections()
}

// record is what one request did, for metrics and the access log.
type record struct {
	key      routingKey
	status   int
	code     string // error code when the router answered itself
	bytesIn  int64
	bytesOut int64
	retries  int
	upstream netip.AddrPort
	upgraded bool
	activity Activity // the sandbox's activity mark, ended with the request
	// abort: the response was cut short after its head was sent; the
	// client connection must be reset so it cannot mistake it for a
	// complete one.
	abort bool
}

// statusClientClosed is logged when the client left before the answer
// (nginx's convention; never sent on the wire).
const statusClientClosed = 499

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt.metrics.inFlight.Inc()
	rec := record{}
	proto := protocolLabel(r)

	var span trace.Span
	if rt.tracing != nil {
		var ctx context.Context
		ctx, span = rt.tracing.start(r)
		r = r.WithContext(ctx)
	}
	rt.serve(w, r, &rec)
	if rec.activity != nil {
		rec.activity.End()
	}

	elapsed := time.Since(start)
	rt.metrics.inFlight.Dec()
	rt.metrics.observeRequest(rec.status, proto, elapsed.Seconds())
	rt.metrics.bytesIn.Add(float64(rec.bytesIn))
	rt.metrics.bytesOut.Add(float64(rec.bytesOut))
	if span != nil {
		rt.tracing.end(span, &rec)
	}
	if rt.opts.AccessLog != nil {
		rt.logAccess(r, &rec, proto, start, elapsed, span)
	}
	if rec.abort {
		panic(http.ErrAbortHandler)
	}
}

func (rt *Router) serve(w http.ResponseWriter, r *http.Request, rec *record) {
	key, kerr := rt.keys.parse(r)
	if kerr != nil {
		if kerr == errMissingID && r.URL.Path == "/healthz" {
			rec.status = http.StatusOK
			writeHealth(w)
			return
		}
		rt.answer(w, r, rec, &httpError{status: http.StatusBadRequest, code: kerr.code, detail: kerr.detail})
		return
	}
	rec.key = key
	if r.Method == http.MethodConnect || !httpguts.ValidHeaderFieldName(r.Method) {
		// An HTTP/2 :method is not checked to be a token by net/http; it
		// is written into an HTTP/1.1 request line, so it must be one.
		rt.answer(w, r, rec, &httpError{status: http.StatusMethodNotAllowed, code: CodeUnsupportedMethod, detail: "method not supported"})
		return
	}
	if !validTarget(requestTarget(r)) {
		rt.answer(w, r, rec, &httpError{status: http.StatusBadRequest, code: "invalid_request_target", detail: "request target is not a valid origin-form path"})
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		// Wrap the body on a copy of the request: after the handler,
		// net/http looks for its own body type on the original to see
		// that an unread rest was given up, and then closes with a delay
		// so that the client reads the answer before a reset.
		r2 := *r
		r = &r2
	}
	if max := rt.opts.MaxRequestBodyBytes; max > 0 && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > max {
			rt.answer(w, r, rec, errBodyTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		cb := &countingBody{ReadCloser: r.Body}
		r.Body = cb
		defer func() { rec.bytesIn = cb.n.Load() }()
	}

	ctx := r.Context()
	fresh := false
	for attempt := 0; ; attempt++ {
		target, herr := rt.target(ctx, key, rec)
		if herr != nil {
			rt.answer(w, r, rec, herr)
			return
		}
		target.fresh = fresh
		rec.upstream = target.addr
		err := rt.forwardOnce(ctx, w, r, &target, rec)
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
		// A pooled connection that died unanswered most likely died with
		// its server (a pod stopping closes them all at once), and the
		// others to it were parked too briefly to be probed: every later
		// attempt dials, so the retry cannot meet the same fate.
		fresh = fresh || ae.kind == failStale
		if rt.shouldRetry(ctx, ae, attempt) {
			rec.retries++
			rt.metrics.retries.Inc()
			continue
		}
		rt.answerAttempt(w, r, rec, ae)
		return
	}
}

// shouldRetry applies the retry rule: a failed connect (never sent) up to
// DialRetries times with jittered exponential backoff inside the request's
// deadline; a stale keep-alive connection once, at once.
func (rt *Router) shouldRetry(ctx context.Context, ae *attemptError, attempt int) bool {
	switch ae.kind {
	case failStale:
		return attempt == 0
	case failDial:
		if attempt >= rt.opts.DialRetries {
			return false
		}
		d := rt.opts.RetryBackoff << attempt
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

// inPodCIDRs reports whether a client-supplied pod address is inside the
// pod network, so that direct mode cannot reach nodes, services or the
// router itself.
func (rt *Router) inPodCIDRs(a netip.Addr) bool {
	for _, p := range rt.opts.PodCIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// upstreamTarget is where one attempt goes.
type upstreamTarget struct {
	addr     netip.AddrPort
	protocol resolver.Protocol
	// release frees the request's place under the activator's release
	// cap once the response head arrived; nil when it was not held.
	release func()
	// fresh: dial a new connection rather than take a pooled one.
	fresh bool
}

// headArrived is called once the attempt has its response head or failed.
func (t *upstreamTarget) headArrived() {
	if t.release != nil {
		t.release()
		t.release = nil
	}
}

var (
	errNotFound     = &httpError{status: http.StatusNotFound, code: CodeSandboxNotFound, detail: "sandbox not found"}
	errFinished     = &httpError{status: http.StatusGone, code: CodeSandboxFinished, detail: "sandbox has finished"}
	errNotReady     = &httpError{status: http.StatusServiceUnavailable, code: CodeNotReady, detail: "router is still loading sandboxes", retryAfter: 1}
	errSuspended    = &httpError{status: http.StatusServiceUnavailable, code: CodeSandboxSuspended, detail: "sandbox is suspended", retryAfter: 5}
	errStarting     = &httpError{status: http.StatusServiceUnavailable, code: CodeSandboxStarting, detail: "sandbox is starting", retryAfter: 1}
	errSuspending   = &httpError{status: http.StatusServiceUnavailable, code: CodeSandboxSuspending, detail: "sandbox is being suspended", retryAfter: 5}
	errForbiddenIP  = &httpError{status: http.StatusBadGateway, code: CodeUpstreamForbidden, detail: "sandbox endpoint is not an address the router dials"}
	errBodyTooLarge = &httpError{status: http.StatusRequestEntityTooLarge, code: CodeRequestTooLarge, detail: "request body too large"}
)

// target resolves the key to a dial address, through the activator when
// the sandbox is not running. It is re-run on every retry so that a pod
// recreated with a new IP is picked up at once.
func (rt *Router) target(ctx context.Context, key routingKey, rec *record) (upstreamTarget, error) {
	var t upstreamTarget
	direct := key.PodIP.IsValid() && rt.opts.PodIPMode == PodIPDirect && rt.inPodCIDRs(key.PodIP)
	res := rt.lookup(key.Key)
	if rt.opts.Activity != nil && rec.activity == nil && res.State != resolver.StateUnknown && res.State != resolver.StateFinished {
		// Only sandboxes the resolver knows are tracked: made-up names
		// must not grow the tracker. A held request is activity too.
		rec.activity = rt.opts.Activity.Begin(key.Key)
	}
	if res.State == resolver.StateUnknown && direct {
		t.addr = netip.AddrPortFrom(key.PodIP, key.Port)
		return t, nil
	}
	switch res.State {
	case resolver.StateRunning:
	case resolver.StateUnknown:
		if !rt.resolver.Synced() {
			return t, errNotReady
		}
		return t, errNotFound
	case resolver.StateFinished:
		return t, errFinished
	default: // starting, suspending, suspended
		if rt.opts.Activator == nil {
			switch res.State {
			case resolver.StateSuspended:
				return t, errSuspended
			case resolver.StateSuspending:
				return t, errSuspending
			}
			return t, errStarting
		}
		var err error
		if res, t.release, err = rt.opts.Activator.Activate(ctx, key.Key, key.Port, res); err != nil {
			return t, err
		}
	}
	t.protocol = res.ProtocolFor(key.Port)
	// The resolver's address wins over the client's hint: after a resume
	// or a pod replacement the hinted address may be another pod's.
	ip := res.PodIP
	if direct && !ip.IsValid() {
		ip = key.PodIP
	}
	if ip.IsLoopback() && !rt.opts.AllowLoopbackPodIP {
		// Whoever can write a pod's or a Sandbox's status must not make
		// the router dial its own host (the admin port, pprof).
		t.headArrived()
		return t, errForbiddenIP
	}
	t.addr = netip.AddrPortFrom(ip, key.Port)
	return t, nil
}

// lookup resolves a key. A UID pins the instance (a sandbox recreated
// under the same name has a new UID) and reaches unclaimed warm-pool pods,
// which have no sandbox name; it never redirects to another sandbox: the
// instance found must carry the name the client gave (the pod's name for a
// warm-pool pod), so a host or ID the client may use cannot be combined
// with someone else's UID.
func (rt *Router) lookup(k resolver.Key) resolver.Result {
	if k.UID == "" {
		return rt.resolver.Lookup(resolver.Key{Namespace: k.Namespace, Name: k.Name})
	}
	res := rt.resolver.Lookup(k)
	if res.State != resolver.StateUnknown {
		if res.Name != k.Name {
			return resolver.Result{}
		}
		return res
	}
	// A resolver that knows no UIDs (a static route without one) answers
	// by name alone.
	if byName := rt.resolver.Lookup(resolver.Key{Namespace: k.Namespace, Name: k.Name}); byName.UID == "" {
		return byName
	}
	return resolver.Result{}
}

// forwardOnce makes one upstream attempt. It returns an error only when
// nothing was sent to the client yet, so the caller can retry or answer.
func (rt *Router) forwardOnce(ctx context.Context, w http.ResponseWriter, r *http.Request, t *upstreamTarget, rec *record) error {
	defer t.headArrived() // on every early return
	fwd := forwarded{}
	fwd.xff, fwd.proto, fwd.host = rt.forward.forwardedFor(r)
	upgrade := ""
	if r.ProtoMajor == 1 {
		upgrade = upgradeType(r.Header)
	}
	if upgrade != "" && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		// After a 101 the connection belongs to the new protocol; a body
		// still being sent would interleave with it.
		return &httpError{status: http.StatusBadRequest, code: "upgrade_with_body", detail: "upgrade requests must not carry a body"}
	}
	if upgrade == "" && (t.protocol == resolver.ProtocolH2C || t.protocol == resolver.ProtocolAuto && isGRPC(r)) {
		if r.ProtoMajor == 1 && r.Body != nil && r.Body != http.NoBody {
			_ = http.NewResponseController(w).EnableFullDuplex()
		}
		resp, err := rt.roundTripH2C(ctx, r, t.addr, &fwd)
		t.headArrived()
		if err != nil {
			return err
		}
		complete := rt.writeResponse(w, resp, rec)
		if cb, ok := r.Body.(*countingBody); ok && !cb.eof.Load() && r.ProtoMajor == 1 {
			// The sandbox answered before the client finished sending:
			// the transport is still blocked reading the client's body,
			// and closing the response waits for it. Interrupt the read
			// and have net/http close the client connection.
			closeAfterReply(w)
			_ = http.NewResponseController(w).SetReadDeadline(aLongTimeAgo)
		}
		resp.Body.Close()
		rec.abort = rec.abort || !complete && ctx.Err() == nil
		return nil
	}
	ex, err := rt.roundTripHTTP1(ctx, w, r, t.addr, t.fresh, &fwd, upgrade)
	t.headArrived()
	if err != nil {
		return err
	}
	if ex.resp.StatusCode == http.StatusSwitchingProtocols {
		if upgrade == "" {
			ex.finish(false)
			return &attemptError{failUpstream, errors.New("unsolicited 101 Switching Protocols")}
		}
		rt.serveUpgrade(w, r, ex, rec)
		return nil
	}
	complete := rt.writeResponse(w, ex.resp, rec)
	ex.finish(complete)
	if !complete && ctx.Err() == nil {
		// Cut short: the client must not take it for a whole response.
		rec.abort = true
	}
	return nil
}

// writeResponse relays the response head, body and trailers. It returns
// whether the body was relayed to its end.
func (rt *Router) writeResponse(w http.ResponseWriter, resp *http.Response, rec *record) bool {
	h := w.Header()
	copyResponseHeaders(h, resp.Header)
	if _, ok := h["Content-Type"]; !ok {
		// A proxy must not invent a media type: nil stops net/http
		// from sniffing one.
		h["Content-Type"] = nil
	}
	announced := announceTrailers(h, resp.Trailer)
	if announced != nil {
		// An HTTP/2 sandbox may send a Content-Length with trailers;
		// HTTP/1.1 can carry trailers only in a chunked body, and
		// net/http drops them when a length is set.
		delete(h, "Content-Length")
	}
	flush := shouldFlushEachWrite(resp)
	rec.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	if flush {
		// Streams: let the client see the head before the first event.
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	n, err := copyBody(w, resp.Body, flush)
	rec.bytesOut = n
	if err != nil {
		if errors.Is(err, errClientGone) {
			rec.code = "client_closed"
		} else {
			rec.code = "upstream_body_aborted"
		}
		return false
	}
	writeTrailers(h, resp.Trailer, announced)
	return true
}

// answer writes the router's own response for err.
func (rt *Router) answer(w http.ResponseWriter, r *http.Request, rec *record, err error) {
	var he *httpError
	if errors.As(err, &he) {
		rec.status, rec.code = he.status, he.code
		writeError(w, r, he.status, he.code, he.detail, he.retryAfter)
		return
	}
	var se StatusError
	if errors.As(err, &se) {
		rec.status, rec.code = se.HTTPStatus(), se.ErrorCode()
		retryAfter := 0
		if ra, ok := se.(interface{ RetryAfterSeconds() int }); ok {
			retryAfter = ra.RetryAfterSeconds()
		}
		writeError(w, r, rec.status, rec.code, se.Error(), retryAfter)
		return
	}
	if r.Context().Err() != nil {
		rec.status, rec.code = statusClientClosed, "client_closed"
		return
	}
	rt.log.Error("unexpected routing error", "err", err)
	rec.status, rec.code = http.StatusBadGateway, CodeUpstreamConnect
	writeError(w, r, http.StatusBadGateway, CodeUpstreamConnect, "sandbox could not be reached", 0)
}

// answerAttempt maps a failed upstream attempt to the client's answer.
// Details are fixed strings: internal addresses never reach the client.
func (rt *Router) answerAttempt(w http.ResponseWriter, r *http.Request, rec *record, ae *attemptError) {
	var he *httpError
	switch ae.kind {
	case failClient:
		rec.status, rec.code = statusClientClosed, "client_closed"
		if r.Context().Err() == nil {
			// The client is still connected but its request broke off
			// (a malformed or truncated body): reset rather than let
			// net/http send an empty 200.
			rec.abort = true
		}
		return
	case failBodyTooLarge:
		he = errBodyTooLarge
	case failTimeout:
		he = &httpError{status: http.StatusGatewayTimeout, code: CodeUpstreamTimeout, detail: "sandbox did not answer in time"}
	case failDial:
		he = &httpError{status: http.StatusBadGateway, code: CodeUpstreamConnect, detail: "sandbox refused the connection", retryAfter: 1}
	default:
		he = &httpError{status: http.StatusBadGateway, code: CodeUpstreamProtocol, detail: "sandbox closed the connection without a valid response"}
	}
	rt.log.Debug("upstream attempt failed", "sandbox", rec.key.Name, "namespace", rec.key.Namespace, "err", ae.err)
	rt.answer(w, r, rec, he)
}

func writeHealth(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"status":"ok"}`))
}

// isGRPC recognises gRPC by its content type (application/grpc, +proto, ...).
func isGRPC(r *http.Request) bool {
	ct := headerValue(r.Header, "Content-Type")
	return len(ct) >= 16 && ct[:16] == "application/grpc"
}

// validTarget rejects request targets with control characters or spaces,
// which an HTTP/2 :path could carry into an HTTP/1.1 request line.
func validTarget(s string) bool {
	if s == "" || (s[0] != '/' && s != "*") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

func protocolLabel(r *http.Request) string {
	switch {
	case r.ProtoMajor == 2 && r.TLS != nil:
		return "h2"
	case r.ProtoMajor == 2:
		return "h2c"
	default:
		return "http1"
	}
}

func normalizeDomains(ds []string) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		d = lowerASCII(d)
		for len(d) > 0 && d[0] == '.' {
			d = d[1:]
		}
		for len(d) > 0 && d[len(d)-1] == '.' {
			d = d[:len(d)-1]
		}
		if d != "" {
			out = append(out, d)
		}
	}
	// Longest first, so a.example.com wins over example.com.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && len(out[j]) > len(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// countingBody counts request body bytes for the access log and notes the
// end of the body. It may be read by a transport goroutine while the
// handler looks at it, hence the atomics.
type countingBody struct {
	ReadCloser io.ReadCloser
	n          atomic.Int64
	eof        atomic.Bool
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	if err == io.EOF {
		c.eof.Store(true)
	}
	return n, err
}

func (c *countingBody) Close() error { return c.ReadCloser.Close() }
