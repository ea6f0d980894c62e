package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServerOptions configure the listeners. Empty addresses disable a listener.
type ServerOptions struct {
	// HTTPAddr serves HTTP/1.1 and h2c (prior knowledge) on one port.
	HTTPAddr string
	// HTTPSAddr serves HTTP/1.1 and h2 (ALPN) with CertFile/KeyFile,
	// reloaded when they change.
	HTTPSAddr         string
	CertFile, KeyFile string
	// ClientAuth asks HTTPS clients for certificates, verified against
	// the CA bundle in ClientCAFile (reloaded when it changes); a verified
	// certificate reaches Access in the request's TLS state.
	ClientAuth   ClientAuth
	ClientCAFile string
	// AdminAddr serves /healthz, /readyz, /metrics and optionally pprof.
	AdminAddr   string
	EnablePprof bool

	// MaxClientConns caps the client connections of the HTTP and HTTPS
	// listeners together (tunnels included); past it a cleartext
	// connection is answered 503 connection_limit and a TLS one closed,
	// at once, while established ones go on. 0: no cap. The admin
	// listener is never capped: health and metrics stay reachable.
	MaxClientConns int

	ReadHeaderTimeout    time.Duration
	IdleTimeout          time.Duration
	MaxHeaderBytes       int
	MaxConcurrentStreams int

	// DrainDelay is how long /readyz fails before the listeners close, so
	// load balancers stop sending new connections first.
	DrainDelay time.Duration
	// DrainTimeout bounds the wait for in-flight requests; upgraded
	// connections are closed when it ends.
	DrainTimeout time.Duration
	// DrainNow, when closed, ends the drain delay early (an operator's
	// second signal); in-flight requests still get DrainTimeout.
	DrainNow <-chan struct{}

	Gatherer prometheus.Gatherer
	// Ready reports whether the data plane can route (resolver synced).
	Ready func() bool
	Log   *slog.Logger
}

// Server runs the proxy and admin listeners around a Router.
type Server struct {
	opts     ServerOptions
	router   *Router
	certs    *certReloader
	draining atomic.Bool

	proxyServers []*http.Server
	listeners    []net.Listener
	tlsIndex     int // index of the HTTPS server in proxyServers, or -1
	admin        *http.Server
	adminLn      net.Listener

	// What the data listeners share: the client-connection count, the
	// spare descriptor, the refusals in progress.
	clientConns slots
	spare       *spareDescriptor
	refusals    *refusals
}

// NewServer binds the listeners at once so that callers (and tests) can
// learn the chosen ports; Run serves them.
func NewServer(rt *Router, opts ServerOptions) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Ready == nil {
		opts.Ready = func() bool { return true }
	}
	s := &Server{opts: opts, router: rt, tlsIndex: -1, spare: newSpareDescriptor(), refusals: newRefusals(64)}
	s.clientConns.max = int64(max(opts.MaxClientConns, 0))
	rt.metrics.connLimits.WithLabelValues("client").Set(float64(s.clientConns.max))
	ok := false
	defer func() {
		if !ok {
			s.closeListeners()
		}
	}()
	if opts.HTTPAddr != "" {
		ln, err := net.Listen("tcp", opts.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("listen http: %w", err)
		}
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		s.add(s.proxyServer(&p, nil), s.limited(ln, s.refusals.refuseCleartext))
	}
	if opts.HTTPSAddr != "" {
		certs, err := newCertReloader(opts.CertFile, opts.KeyFile, opts.ClientCAFile, opts.ClientAuth, opts.Log)
		if err != nil {
			return nil, err
		}
		s.certs = certs
		ln, err := net.Listen("tcp", opts.HTTPSAddr)
		if err != nil {
			return nil, fmt.Errorf("listen https: %w", err)
		}
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		s.tlsIndex = len(s.proxyServers)
		s.add(s.proxyServer(&p, certs.tlsConfig()), s.limited(ln, refuseClose))
	}
	if opts.AdminAddr != "" {
		ln, err := net.Listen("tcp", opts.AdminAddr)
		if err != nil {
			return nil, fmt.Errorf("listen admin: %w", err)
		}
		s.adminLn = ln
		s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	ok = true
	return s, nil
}

// limited puts a data listener under the client-connection cap.
func (s *Server) limited(ln net.Listener, refuse func(net.Conn)) net.Listener {
	return &limitedListener{Listener: ln, open: &s.clientConns, refuse: refuse, spare: s.spare,
		metrics: s.router.metrics, log: s.opts.Log, warnings: s.router.warnings}
}

func (s *Server) add(srv *http.Server, ln net.Listener) {
	s.proxyServers = append(s.proxyServers, srv)
	s.listeners = append(s.listeners, ln)
}

func (s *Server) proxyServer(p *http.Protocols, tlsConf *tls.Config) *http.Server {
	o := s.opts
	return &http.Server{
		Handler:   s.router,
		Protocols: p,
		TLSConfig: tlsConf,
		// No ReadTimeout or WriteTimeout: they would cut long streams and
		// uploads. Slow clients are bounded by the header timeout and the
		// idle timeout between requests.
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: o.MaxConcurrentStreams},
		ErrorLog:          slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
}

// HTTPAddr, HTTPSAddr and AdminAddr return the bound addresses ("" if off).
func (s *Server) HTTPAddr() string  { return s.addrOf(0, s.opts.HTTPAddr) }
func (s *Server) HTTPSAddr() string { return s.addrOf(s.tlsIndex, s.opts.HTTPSAddr) }
func (s *Server) AdminAddr() string {
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

func (s *Server) addrOf(i int, configured string) string {
	if configured == "" || i < 0 || i >= len(s.listeners) {
		return ""
	}
	return s.listeners[i].Addr().String()
}

// Run serves until ctx ends, then drains: /readyz fails, after DrainDelay
// the listeners close, in-flight requests get DrainTimeout to finish, and
// finally upgraded connections are closed. It returns when all is done.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, len(s.proxyServers)+2)
	for i, srv := range s.proxyServers {
		go func() {
			var err error
			if i == s.tlsIndex {
				err = srv.ServeTLS(s.listeners[i], "", "")
			} else {
				err = srv.Serve(s.listeners[i])
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	if s.admin != nil {
		go func() {
			if err := s.admin.Serve(s.adminLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	if s.certs != nil {
		go func() {
			if err := s.certs.watch(watchCtx); err != nil {
				s.opts.Log.Error("TLS reload disabled", "err", err)
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		s.opts.Log.Error("listener failed; shutting down", "err", runErr)
	}
	s.drain()
	return runErr
}

func (s *Server) drain() {
	log := s.opts.Log
	s.draining.Store(true)
	log.Info("draining", "delay", s.opts.DrainDelay, "timeout", s.opts.DrainTimeout)
	if s.opts.DrainDelay > 0 {
		t := time.NewTimer(s.opts.DrainDelay)
		select {
		case <-t.C:
		case <-s.opts.DrainNow:
			t.Stop()
		}
	}
	log.Info("closing listeners; waiting for requests in flight")
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range s.proxyServers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				log.Warn("drain timed out; closing remaining connections", "err", err)
				srv.Close()
			}
		}()
	}
	wg.Wait()
	// Tunnels last: they may live for days, so the drain does not wait
	// for them, but every request that could finish has.
	n := s.router.CloseUpgraded()
	log.Info("drained; closed the open tunnels", "tunnels_closed", n)
	s.spare.close()
	if s.admin != nil {
		actx, acancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.admin.Shutdown(actx)
		acancel()
	}
}

func (s *Server) closeListeners() {
	for _, ln := range s.listeners {
		ln.Close()
	}
	if s.adminLn != nil {
		s.adminLn.Close()
	}
	s.spare.close()
}

// Ready reports whether /readyz passes.
func (s *Server) Ready() bool { return !s.draining.Load() && s.opts.Ready() }

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeHealth(w) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.draining.Load():
			writeError(w, r, http.StatusServiceUnavailable, CodeShuttingDown, "router is draining", 0)
		case !s.opts.Ready():
			writeError(w, r, http.StatusServiceUnavailable, CodeNotReady, "router is still loading sandboxes", 0)
		default:
			writeHealth(w)
		}
	})
	if s.opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	}
	if s.opts.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
