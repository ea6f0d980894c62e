package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/dashboard"
	dashkube "github.com/sandbox-router/sandbox-router/dashboard/kube"
	"github.com/sandbox-router/sandbox-router/resolver/kube"
)

// dashboardConfig is the dashboard's part of the configuration.
type dashboardConfig struct {
	Listen        string
	Anonymous     bool
	RouterURL     string
	Extensions    bool
	SecureCookies bool
	ReviewQPS     float64
}

func (d *dashboardConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&d.Listen, "listen-dashboard", "", "serve the web dashboard on this address (a listener of its own); empty disables; needs the Kubernetes resolver; viewers sign in with a Kubernetes token and see what RBAC lets them list or get, unless dashboard-anonymous")
	fs.BoolVar(&d.Anonymous, "dashboard-anonymous", false, "serve the dashboard without sign-in: whoever reaches its listener sees every sandbox; required with authz-mode allow-all, which knows no viewers")
	fs.StringVar(&d.RouterURL, "dashboard-router-url", "", "the router's URL as clients reach it, for the dashboard's curl examples (default http://localhost:8080)")
	fs.BoolVar(&d.SecureCookies, "dashboard-secure-cookies", false, "the dashboard is reached over HTTPS through a TLS-terminating proxy: its sign-in cookie is sent Secure (and __Host- prefixed) although its own listener is plain HTTP")
	fs.Float64Var(&d.ReviewQPS, "dashboard-review-qps", 20, "SubjectAccessReviews per second for what dashboard viewers may list and get (burst twice that), on a client of their own: never taken from --authz-qps")
	fs.BoolVar(&d.Extensions, "dashboard-extensions", true, "show SandboxTemplates, SandboxWarmPools and SandboxClaims (extensions.agents.x-k8s.io; needs list and watch on them: deploy/rbac/dashboard)")
}

func (d *dashboardConfig) validate(c *config, bad func(string, ...any)) {
	if d.Listen == "" {
		if d.Anonymous || d.RouterURL != "" || d.SecureCookies {
			bad("dashboard-anonymous, dashboard-router-url and dashboard-secure-cookies need listen-dashboard")
		}
		return
	}
	checkListen("listen-dashboard", d.Listen, bad)
	if c.Routes != "" {
		bad("listen-dashboard needs the Kubernetes resolver (routes selects the static one, which reports no changes)")
	}
	if modes, _ := access.ParseModes(c.AuthzMode); len(modes) == 1 && modes[0] == access.ModeAllowAll && !d.Anonymous {
		bad("listen-dashboard with authz-mode allow-all would show every sandbox to whoever reaches it: set dashboard-anonymous to mean that, or choose an authz-mode that authenticates (kubernetes, tokenreview)")
	}
	if d.ReviewQPS <= 0 {
		bad("dashboard-review-qps must be positive")
	}
	if d.Anonymous && d.SecureCookies {
		bad("dashboard-secure-cookies is for sign-in, which dashboard-anonymous turns off")
	}
	// dashboard-router-url is checked by dashboard.New, at start.
}

// dashboardParts are what the dashboard shows besides the resolver's
// sandboxes, each nil when not running.
type dashboardParts struct {
	Activity dashboard.Activity
	Metrics  prometheus.Gatherer
	Checker  *access.Checker
}

// startDashboard serves the dashboard on its own listener until serveCtx
// ends; its catalogs follow the resolver until lifeCtx ends. It returns
// the bound address ("" when off).
func startDashboard(lifeCtx, serveCtx context.Context, cfg *config, kr *kube.Resolver, restCfg *rest.Config, parts dashboardParts, log *slog.Logger) (string, error) {
	d := &cfg.Dashboard
	if d.Listen == "" {
		return "", nil
	}
	log = log.With("component", "dashboard")
	opts := dashboard.Options{
		Sandboxes:     kr,
		Activity:      parts.Activity,
		Metrics:       parts.Metrics,
		RouterURL:     d.RouterURL,
		SecureCookies: d.SecureCookies,
		Log:           log,
	}
	if len(cfg.BaseDomains) > 0 {
		opts.BaseDomain = cfg.BaseDomains[0]
	}
	if !d.Anonymous {
		// Viewers sign in with a token; the access checker reviews it and
		// asks RBAC what they may list and get.
		if parts.Checker == nil {
			return "", errors.New("listen-dashboard: sign-in needs an authz-mode that authenticates")
		}
		auth, err := dashboard.AccessAuth(parts.Checker, log)
		if err != nil {
			return "", fmt.Errorf("dashboard: %w", err)
		}
		opts.Auth = auth
	}
	if d.Extensions {
		cat, err := dashkube.New(dashkube.Options{Config: restCfg, Namespaces: cfg.Namespaces, Log: log})
		if err != nil {
			return "", err
		}
		go func() {
			if err := cat.Run(lifeCtx); err != nil && lifeCtx.Err() == nil {
				log.Error("dashboard extensions catalog ended", "err", err)
			}
		}()
		opts.Extensions = cat
	}
	h, err := dashboard.New(opts)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", d.Listen)
	if err != nil {
		return "", fmt.Errorf("listen-dashboard: %w", err)
	}
	go func() {
		if err := h.Run(lifeCtx); err != nil {
			log.Error("dashboard ended", "err", err)
		}
	}()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("dashboard listener failed", "err", err)
		}
	}()
	go func() {
		<-serveCtx.Done()
		// Open pages hold event streams that never end by themselves: give
		// other requests a moment, then close what is left (pages
		// reconnect to another replica).
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}()
	log.Info("dashboard listening", "addr", ln.Addr().String(), "anonymous", d.Anonymous)
	return ln.Addr().String(), nil
}
