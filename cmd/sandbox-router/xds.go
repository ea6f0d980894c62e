package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/router"
	"github.com/sandbox-router/sandbox-router/xds"
	xdskube "github.com/sandbox-router/sandbox-router/xds/kube"
)

// xdsConfig is the xDS control plane's part of the configuration.
type xdsConfig struct {
	Listen           string
	TLSCert          string
	TLSKey           string
	TLSClientCA      string
	RouterEndpoints  []string
	RouterService    string
	RouterPortName   string
	EnvoyPort        int
	EnvoyXDSCluster  string
	ColdAfter        time.Duration
	ActivityInterval time.Duration
}

func (x *xdsConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&x.Listen, "xds-listen", "", "serve xDS (ADS, delta and state of the world; VHDS) on this address for Envoy fleets and proxyless gRPC clients; empty disables; needs the Kubernetes resolver")
	fs.StringVar(&x.TLSCert, "xds-tls-cert", "", "TLS certificate (PEM) for the xDS listener, reloaded on change; empty serves plaintext")
	fs.StringVar(&x.TLSKey, "xds-tls-key", "", "TLS private key (PEM) for the xDS listener")
	fs.StringVar(&x.TLSClientCA, "xds-tls-client-ca-file", "", "CA bundle (PEM) that verifies xDS clients' certificates, which are then required; a client's node id or cluster must be one of its certificate's names (CN, DNS or URI SANs)")
	fs.Var(&listFlag{dst: &x.RouterEndpoints}, "xds-router-endpoints", "the router fleet's plain-HTTP addresses (host:port), where xDS clients send sandboxes that are not running; repeat or comma-separate; or use xds-router-service")
	fs.StringVar(&x.RouterService, "xds-router-service", "", "namespace/name of the router's Service: its ready EndpointSlice addresses are the router fleet (needs list and watch on endpointslices there)")
	fs.StringVar(&x.RouterPortName, "xds-router-port-name", "http", "the Service port that serves listen-http (plain HTTP and h2c)")
	fs.IntVar(&x.EnvoyPort, "xds-envoy-listener-port", 10000, "the port the Envoy listener it publishes listens on")
	fs.StringVar(&x.EnvoyXDSCluster, "xds-envoy-control-plane-cluster", "sandbox-router-xds", "the name the Envoy bootstrap gives this control plane's cluster (VHDS is fetched from it)")
	fs.DurationVar(&x.ActivityInterval, "xds-activity-interval", 30*time.Second, "how often Envoy (access log) and proxyless gRPC clients (load reports) report the sandboxes they reach directly, so the idle suspender sees that traffic; keep it well under the shortest idle timeout (with the activator on)")
	fs.DurationVar(&x.ColdAfter, "xds-cold-after", 30*time.Minute, "a virtual host an Envoy has not asked for in this long is removed from it (it asks again on its next request for the host)")
}

func (x *xdsConfig) validate(c *config, bad func(string, ...any)) {
	if x.Listen == "" {
		return
	}
	checkListen("xds-listen", x.Listen, bad)
	if c.Routes != "" {
		bad("xds-listen needs the Kubernetes resolver (routes selects the static one, which reports no changes)")
	}
	if (x.TLSCert == "") != (x.TLSKey == "") {
		bad("xds-tls-cert and xds-tls-key must be given together")
	}
	if x.TLSClientCA != "" && x.TLSCert == "" {
		bad("xds-tls-client-ca-file needs xds-tls-cert and xds-tls-key")
	}
	if (len(x.RouterEndpoints) == 0) == (x.RouterService == "") {
		bad("xds-listen needs exactly one of xds-router-endpoints and xds-router-service")
	}
	if _, err := parseRouterEndpoints(x.RouterEndpoints); err != nil {
		bad("xds-router-endpoints: %v", err)
	}
	if x.RouterService != "" {
		ns, name, ok := strings.Cut(x.RouterService, "/")
		if !ok || !resolver.IsDNSLabel(ns) || !resolver.IsDNSLabel(name) {
			bad("xds-router-service: %q is not namespace/name", x.RouterService)
		}
	}
	if x.EnvoyPort < 1 || x.EnvoyPort > 65535 {
		bad("xds-envoy-listener-port must be between 1 and 65535")
	}
	if x.ColdAfter < time.Minute {
		bad("xds-cold-after must be at least 1m")
	}
	if x.ActivityInterval < time.Second {
		bad("xds-activity-interval must be at least 1s")
	}
}

func parseRouterEndpoints(list []string) ([]netip.AddrPort, error) {
	out := make([]netip.AddrPort, 0, len(list))
	for _, s := range list {
		a, err := netip.ParseAddrPort(s)
		if err != nil || a.Port() == 0 {
			return nil, fmt.Errorf("%q is not ip:port", s)
		}
		out = append(out, a)
	}
	return out, nil
}

// startXDS serves xDS from the Kubernetes resolver's view until ctx ends,
// and returns the address it listens on ("" when off).
func startXDS(ctx context.Context, cfg *config, res xds.Resolver, activity router.ActivityTracker, restCfg *rest.Config, reg prometheus.Registerer, log *slog.Logger) (string, error) {
	x := cfg.XDS
	if x.Listen == "" {
		return "", nil
	}
	if res == nil {
		return "", errors.New("xds-listen needs the Kubernetes resolver")
	}
	endpoints, _ := parseRouterEndpoints(x.RouterEndpoints) // validated
	opts := xds.Options{
		Resolver:           res,
		BaseDomains:        cfg.BaseDomains,
		DefaultPort:        router.DefaultPort,
		RouterEndpoints:    endpoints,
		AllowLoopbackPodIP: cfg.AllowLoopbackPodIP,
		ColdAfter:          x.ColdAfter,
		Envoy:              xds.EnvoyOptions{ListenPort: uint32(x.EnvoyPort), ControlPlaneCluster: x.EnvoyXDSCluster},
		Metrics:            xds.NewMetrics(reg),
		ActivityInterval:   x.ActivityInterval,
		Log:                log.With("component", "xds"),
	}
	if activity != nil {
		// Traffic that goes straight to pods is reported by the clients;
		// it keeps the sandbox from being suspended as idle, as traffic
		// through the router does.
		opts.Activity = func(k resolver.Key) { activity.Begin(k).End() }
	}
	if x.TLSCert != "" {
		auth := router.ClientAuthOff
		if x.TLSClientCA != "" {
			auth = router.ClientAuthRequired
		}
		tlsCfg, err := router.ReloadingTLS(ctx, x.TLSCert, x.TLSKey, x.TLSClientCA, auth, opts.Log)
		if err != nil {
			return "", fmt.Errorf("xds tls: %w", err)
		}
		opts.TLS = tlsCfg
	}
	srv, err := xds.New(opts)
	if err != nil {
		return "", err
	}
	if x.RouterService != "" {
		cs, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			return "", err
		}
		ns, name, _ := strings.Cut(x.RouterService, "/")
		w := &xdskube.RouterEndpoints{Client: cs, Namespace: ns, Service: name, PortName: x.RouterPortName, Set: func(a []netip.AddrPort) {
			if err := srv.SetRouterEndpoints(a); err != nil {
				opts.Log.Error("router endpoints", "err", err)
				return
			}
			opts.Log.Info("router endpoints", "count", len(a))
		}}
		go func() {
			if err := w.Run(ctx); err != nil && ctx.Err() == nil {
				opts.Log.Error("router endpoints watch ended", "err", err)
			}
		}()
	}
	lis, err := net.Listen("tcp", x.Listen)
	if err != nil {
		return "", fmt.Errorf("listen xds: %w", err)
	}
	go func() {
		if err := srv.Serve(ctx, lis); err != nil {
			log.Error("xds server ended", "err", err)
		}
	}()
	return lis.Addr().String(), nil
}
