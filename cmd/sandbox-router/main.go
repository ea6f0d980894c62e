// Command sandbox-router is the L7 front door to agent sandboxes. It reads
// its configuration, wires the resolver, the data plane and the listeners,
// and runs until SIGTERM or SIGINT, then drains. Its subcommands mint
// scoped tokens (token) and make their keys (keygen).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/dashboard"
	"github.com/sandbox-router/sandbox-router/resolver/kube"
	"github.com/sandbox-router/sandbox-router/resolver/static"
	"github.com/sandbox-router/sandbox-router/router"
	"github.com/sandbox-router/sandbox-router/xds"
)

func main() {
	if len(os.Args) > 1 {
		sub := map[string]func([]string, io.Writer, io.Writer) error{"token": runToken, "keygen": runKeygen, "version": runVersion}[os.Args[1]]
		if sub != nil {
			if err := sub(os.Args[2:], os.Stdout, os.Stderr); err != nil {
				if !errors.Is(err, flag.ErrHelp) {
					fmt.Fprintf(os.Stderr, "sandbox-router %s: %v\n", os.Args[1], err)
					os.Exit(2)
				}
			}
			return
		}
	}
	cfg, err := loadConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox-router: %v\n", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox-router: %v\n", err)
		os.Exit(1)
	}
}

func run(cfg *config) error {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// Two lives. serveCtx ends at SIGTERM (or when the resolver fails for
	// good): the listeners drain and the idle suspender gives up its
	// lead. lifeCtx ends only after the drain: the resolver, the
	// activator's notifications and the activity reporter keep working
	// while in-flight and held requests finish, or a draining router
	// would route from a frozen cache.
	serveCtx, stopServing := context.WithCancelCause(context.Background())
	defer stopServing(nil)
	lifeCtx, endLife := context.WithCancel(context.Background())
	defer endLife()
	drainNow := watchSignals(serveCtx, stopServing, log)

	if os.Getenv("GOGC") == "" { // GOGC in the environment wins
		tuneGC(lifeCtx)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := router.NewMetrics(reg)
	caps, err := connectionBudget(cfg, metrics, log)
	if err != nil {
		return err
	}

	accessLog, closeAccessLog, err := openAccessLog(cfg.AccessLog, metrics, log)
	if err != nil {
		return err
	}
	defer closeAccessLog()

	tp, shutdownTracing, err := setupTracing(lifeCtx)
	if err != nil {
		return err
	}
	defer shutdownTracing()

	// A resolver that fails for good ends serving and the process, with
	// its error, also when it fails during a drain that a signal began.
	var resolverErr atomic.Pointer[error]
	failed := func(err error) {
		resolverErr.CompareAndSwap(nil, &err)
		stopServing(err)
	}
	res, kr, restCfg, err := startResolver(lifeCtx, failed, cfg, reg, log)
	if err != nil {
		return err
	}
	checker, minter, err := startAccess(lifeCtx, cfg, res, restCfg, reg, log)
	if err != nil {
		return err
	}
	var act router.Activator
	var activity router.ActivityTracker
	var errorEvents router.ErrorEvents
	var activated *activatorParts
	if kr != nil && cfg.Activator {
		if activated, err = startActivator(lifeCtx, serveCtx, cfg, kr, restCfg, reg, log); err != nil {
			return err
		}
		act, activity, errorEvents = activated.activator, activated.tracker, activated.events
	}

	var xdsRes xds.Resolver
	if kr != nil {
		xdsRes = kr
	}
	xdsAddr, err := startXDS(serveCtx, cfg, xdsRes, activity, restCfg, reg, log)
	if err != nil {
		return err
	}

	trusted := make([]netip.Prefix, 0, len(cfg.TrustedProxies))
	for _, p := range cfg.TrustedProxies {
		pfx, _ := parsePrefix(p) // validated
		trusted = append(trusted, pfx)
	}
	podCIDRs := make([]netip.Prefix, 0, len(cfg.PodCIDRs))
	for _, p := range cfg.PodCIDRs {
		pfx, _ := netip.ParsePrefix(p) // validated
		podCIDRs = append(podCIDRs, pfx)
	}
	// The MCP endpoint serves runtime calls through the router, which
	// serves the endpoint on its host: the router is set once built.
	var rt *router.Router
	dataPlane := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rt.ServeHTTP(w, r) })
	mcpHandler, err := startMCP(lifeCtx, cfg, checker, minter, kr, restCfg, dataPlane, reg, log)
	if err != nil {
		return err
	}
	var mcpHosts []string
	if mcpHandler != nil {
		mcpHosts = []string{cfg.MCP.Host}
	}
	rt, err = router.New(router.Options{
		Resolver:             res,
		Access:               checker,
		Mint:                 minter,
		MCP:                  mcpHandler,
		MCPHosts:             mcpHosts,
		Activator:            act,
		Activity:             activity,
		ErrorEvents:          errorEvents,
		BaseDomains:          cfg.BaseDomains,
		PathRoutingPrefix:    cfg.PathRoutingPrefix,
		PodIPMode:            podIPMode(cfg.PodIPMode),
		PodCIDRs:             podCIDRs,
		AllowLoopbackPodIP:   cfg.AllowLoopbackPodIP,
		TrustedProxies:       trusted,
		ForwardAuthorization: cfg.ForwardAuth,
		IdentityHeaders:      cfg.IdentityHeaders,
		SessionCookie:        cfg.AuthzCookieName,
		// The dashboard's sign-in cookie, on whatever replica or port it
		// was set, never reaches a sandbox.
		CredentialCookies:   []string{dashboard.CookieName},
		EntryParam:          entryParam(cfg),
		MaxRequestBodyBytes: cfg.MaxRequestBody,
		MaxClientTimeout:    cfg.MaxClientTimeout,
		Pool: router.PoolOptions{
			MaxConnsPerEndpoint:   cfg.UpstreamMaxConns,
			MaxWaitersPerEndpoint: cfg.UpstreamMaxConnWaiters,
			ConnWaitTimeout:       cfg.UpstreamConnWaitTimeout,
			MaxIdlePerEndpoint:    cfg.UpstreamMaxIdle,
			MaxIdleTotal:          cfg.UpstreamMaxIdleTotal,
			IdleTimeout:           cfg.UpstreamIdleTimeout,
			DialTimeout:           cfg.UpstreamDialTimeout,
		},
		MaxTunnels:            caps.tunnels,
		MaxUpstreamConns:      caps.upstream,
		ResponseHeaderTimeout: cfg.UpstreamHeaderTimeout,
		DialRetries:           dialRetries(cfg.DialRetries),
		Metrics:               metrics,
		AccessLog:             accessLog,
		TracerProvider:        tp,
		Log:                   log,
	})
	if err != nil {
		return err
	}
	defer rt.Close()

	srv, err := router.NewServer(rt, router.ServerOptions{
		HTTPAddr:             cfg.ListenHTTP,
		HTTPSAddr:            cfg.ListenHTTPS,
		CertFile:             cfg.TLSCert,
		KeyFile:              cfg.TLSKey,
		ClientAuth:           clientAuthModes[cfg.MTLSMode],
		ClientCAFile:         cfg.TLSClientCA,
		AdminAddr:            cfg.ListenAdmin,
		EnablePprof:          cfg.Pprof,
		ReadHeaderTimeout:    cfg.ReadHeaderTimeout,
		IdleTimeout:          cfg.IdleTimeout,
		MaxHeaderBytes:       cfg.MaxHeaderBytes,
		MaxConcurrentStreams: cfg.MaxConcurrentStreams,
		MaxClientConns:       caps.client,
		DrainDelay:           cfg.DrainDelay,
		DrainTimeout:         cfg.DrainTimeout,
		DrainNow:             drainNow,
		Gatherer:             reg,
		Ready:                res.Synced,
		Log:                  log,
	})
	if err != nil {
		return err
	}
	parts := dashboardParts{Metrics: reg}
	parts.Checker, _ = checker.(*access.Checker) // nil under allow-all
	if activated != nil {
		parts.Activity = activated.view
	}
	dashboardAddr, err := startDashboard(lifeCtx, serveCtx, cfg, kr, restCfg, parts, log)
	if err != nil {
		return err
	}
	log.Info("sandbox-router listening", "http", srv.HTTPAddr(), "https", srv.HTTPSAddr(), "admin", srv.AdminAddr(), "xds", xdsAddr, "dashboard", dashboardAddr)
	if err := srv.Run(serveCtx); err != nil {
		return err
	}
	if err := resolverErr.Load(); err != nil {
		return *err
	}
	return nil
}

// dialRetries maps --dial-retries to router.Options.DialRetries, where 0
// means the default and a negative number none.
func dialRetries(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// errSignalled is serveCtx's cause when a signal ended it.
var errSignalled = errors.New("signalled")

// watchSignals ends serving at the first SIGTERM or SIGINT, and closes the
// returned channel at the second: the drain then skips the rest of its
// delay (in-flight requests still get the drain timeout).
func watchSignals(serveCtx context.Context, stopServing context.CancelCauseFunc, log *slog.Logger) <-chan struct{} {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	drainNow := make(chan struct{})
	go func() {
		defer signal.Stop(sigs)
		select {
		case s := <-sigs:
			log.Info("signal received: draining; a second signal skips the drain delay", "signal", s.String())
			stopServing(errSignalled)
		case <-serveCtx.Done():
		}
		s := <-sigs
		log.Info("second signal: skipping the rest of the drain delay", "signal", s.String())
		close(drainNow)
	}()
	return drainNow
}

// startResolver starts the static resolver when a routes file is given,
// else the informer-backed one, which it also returns with its config for
// the activator. A resolver that fails for good cancels ctx with its
// error, which ends the process.
func startResolver(ctx context.Context, fail func(error), cfg *config, reg prometheus.Registerer, log *slog.Logger) (router.Resolver, *kube.Resolver, *rest.Config, error) {
	if cfg.Routes != "" {
		routes, err := static.New(cfg.Routes, log)
		if err != nil {
			return nil, nil, nil, err
		}
		go func() {
			if err := routes.Watch(ctx); err != nil {
				log.Error("routes reload disabled", "err", err)
			}
		}()
		return routes, nil, nil, nil
	}
	restCfg, err := kubeConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, nil, nil, err
	}
	// client-go logs through klog; send it to the same JSON log.
	klog.SetSlogLogger(log.With("component", "client-go"))
	kr, err := kube.New(kube.Options{Config: restCfg, Namespaces: cfg.Namespaces, Versions: cfg.SandboxVersions, Logger: log})
	if err != nil {
		return nil, nil, nil, err
	}
	if err := kr.RegisterMetrics(reg); err != nil {
		return nil, nil, nil, err
	}
	go func() {
		if err := kr.Run(ctx); err != nil && ctx.Err() == nil {
			fail(fmt.Errorf("resolver: %w", err))
		}
	}()
	go func() {
		// The initial lists decode every pod in full: hand that garbage
		// back to the OS once, instead of keeping it resident.
		select {
		case <-kr.SyncedC():
			debug.FreeOSMemory()
		case <-ctx.Done():
		}
	}()
	return kr, kr, restCfg, nil
}

// kubeConfig loads a kubeconfig file, or the in-cluster service account
// when path is empty.
func kubeConfig(path string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("no --routes and no --kubeconfig, and not in a cluster: %w", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", path); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "sandbox-router"
	// The resolver lists once per informer and then only watches; these
	// bound the relist burst after an API server restart.
	cfg.QPS, cfg.Burst = 20, 40
	return cfg, nil
}

func podIPMode(s string) router.PodIPMode {
	switch s {
	case "direct":
		return router.PodIPDirect
	case "off":
		return router.PodIPOff
	}
	return router.PodIPResolver
}

// openAccessLog returns the access log's writer (nil when off): JSON lines
// through a buffer flushed every 100 ms.
func openAccessLog(dest string, metrics *router.Metrics, log *slog.Logger) (io.Writer, func(), error) {
	var w io.Writer
	closeFile := func() {}
	switch dest { // true and false: upstream's boolean flag, migrated as is
	case "off", "", "false":
		return nil, func() {}, nil
	case "stdout", "true":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("access log: %w", err)
		}
		w = f
		closeFile = func() { f.Close() }
	}
	bw := router.NewBufferedWriter(w, router.BufferedWriterOptions{Metrics: metrics, Log: log})
	return bw, func() { bw.Close(); closeFile() }, nil
}

// clientAuthModes are the values of --mtls-mode.
var clientAuthModes = map[string]router.ClientAuth{"off": router.ClientAuthOff, "optional": router.ClientAuthOptional, "required": router.ClientAuthRequired}

// entryParam is the query parameter the router removes before the sandbox
// sees a request: the entry links' credential, when sessions are on.
func entryParam(cfg *config) string {
	if cfg.AuthzCookieName == "" {
		return ""
	}
	return cfg.AuthzCookieQueryParam
}
