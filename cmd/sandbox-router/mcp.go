package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/mcp"
	mcpkube "github.com/sandbox-router/sandbox-router/mcp/kube"
	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/resolver/kube"
	"github.com/sandbox-router/sandbox-router/router"
)

// mcpConfig is the MCP endpoint's part of the configuration.
type mcpConfig struct {
	Host                 string
	PublicURL            string
	AuthorizationServers []string
	ClaimVersion         string
	CallsPerSecond       float64
	ConcurrentCalls      int
	SessionsPerCaller    int
	CommandTimeout       time.Duration
}

func (m *mcpConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&m.Host, "mcp-host", "", "serve the MCP endpoint (Streamable HTTP, /mcp) on requests for this host name, e.g. mcp.sandboxes.example.com; empty disables; needs the Kubernetes resolver and an authz-mode that authenticates (kubernetes, tokenreview, scoped-token)")
	fs.StringVar(&m.PublicURL, "mcp-public-url", "", "where MCP clients reach the endpoint's host (scheme://host[:port]), named in its OAuth protected-resource metadata; empty = https://<mcp-host>")
	fs.Var(&listFlag{dst: &m.AuthorizationServers}, "mcp-authorization-server", "an OAuth/OIDC issuer URL whose tokens the API server takes, listed in the protected-resource metadata for clients that can log in; repeat or comma-separate")
	fs.StringVar(&m.ClaimVersion, "mcp-claim-version", "v1beta1", "the served version of extensions.agents.x-k8s.io SandboxClaims that create_sandbox makes (v1beta1 claims a warm pool, v1alpha1 a template)")
	fs.Float64Var(&m.CallsPerSecond, "mcp-calls-per-second", 10, "MCP tool calls per second per identity (burst twice that)")
	fs.IntVar(&m.ConcurrentCalls, "mcp-concurrent-calls", 8, "MCP tool calls running at once per identity")
	fs.IntVar(&m.SessionsPerCaller, "mcp-sessions-per-caller", 16, "open MCP sessions per identity")
	fs.DurationVar(&m.CommandTimeout, "mcp-command-timeout", time.Minute, "execute_command's default timeout (a call may ask for up to 10m)")
}

func (m *mcpConfig) validate(c *config, bad func(string, ...any)) {
	if m.Host == "" {
		if m.PublicURL != "" || len(m.AuthorizationServers) > 0 {
			bad("mcp-public-url and mcp-authorization-server need mcp-host")
		}
		return
	}
	host := strings.ToLower(m.Host)
	if !validDNSName(host) || !strings.Contains(host, ".") {
		bad("mcp-host: %q is not a host name with a domain (e.g. mcp.sandboxes.example.com)", m.Host)
	}
	if c.Routes != "" {
		bad("mcp-host needs the Kubernetes resolver (routes selects the static one)")
	}
	if modes, _ := access.ParseModes(c.AuthzMode); len(modes) == 1 && modes[0] == access.ModeAllowAll {
		bad("mcp-host needs an authz-mode that authenticates callers (kubernetes, tokenreview, scoped-token): every MCP tool acts as its caller")
	}
	for _, d := range c.BaseDomains {
		d = strings.Trim(strings.ToLower(d), ".")
		// mcp.<base> is no sandbox's (their hosts are <id>.<ns>.<base>);
		// a host two labels or more under it would hide one.
		if sub, under := strings.CutSuffix(host, "."+d); host == d || under && strings.Contains(sub, ".") {
			bad("mcp-host %s is the base domain %s or a sandbox's host under it: use mcp.%s or a host of its own", m.Host, d, d)
		}
	}
	if c.PathRoutingPrefix != "" && c.AuthzMintKey != "" && c.AuthzMintPublicURL == "" {
		// preview_url would build path links on the MCP host, which
		// serves nothing else.
		bad("mcp-host with path-routing-prefix and authz-mint-signing-key needs authz-mint-public-url: where preview links point")
	}
	if m.PublicURL != "" {
		if u, err := url.Parse(m.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
			bad("mcp-public-url: %q is not scheme://host[:port]", m.PublicURL)
		}
	}
	for _, s := range m.AuthorizationServers {
		if u, err := url.Parse(s); err != nil || u.Scheme != "https" || u.Host == "" {
			bad("mcp-authorization-server: %q is not an https URL", s)
		}
	}
	if m.ClaimVersion != "v1beta1" && m.ClaimVersion != "v1alpha1" {
		bad("mcp-claim-version: %q is not v1beta1 or v1alpha1", m.ClaimVersion)
	}
	if m.CallsPerSecond <= 0 || m.ConcurrentCalls <= 0 || m.SessionsPerCaller <= 0 || m.CommandTimeout <= 0 || m.CommandTimeout > 10*time.Minute {
		bad("mcp-calls-per-second, mcp-concurrent-calls and mcp-sessions-per-caller must be positive, mcp-command-timeout 1ns-10m")
	}
}

// validDNSName reports whether s is a DNS name of lower-case labels.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !resolver.IsDNSLabel(label) {
			return false
		}
	}
	return true
}

// startMCP builds the MCP endpoint of --mcp-host (nil without). The
// router it serves runtime calls through is set later (dataPlane): the
// router is built with the endpoint.
func startMCP(ctx context.Context, cfg *config, checker router.Access, minter http.Handler, kr *kube.Resolver, restCfg *rest.Config,
	dataPlane http.Handler, reg prometheus.Registerer, log *slog.Logger) (http.Handler, error) {
	m := &cfg.MCP
	if m.Host == "" {
		return nil, nil
	}
	c, ok := checker.(*access.Checker)
	if !ok || kr == nil {
		return nil, errors.New("mcp-host needs the Kubernetes resolver and an authenticating authz-mode")
	}
	public := &url.URL{Scheme: "https", Host: m.Host}
	if m.PublicURL != "" {
		public, _ = url.Parse(m.PublicURL) // validated
		public.Path = ""
	}
	opts := mcp.Options{
		PublicURL:            public,
		AuthorizationServers: m.AuthorizationServers,
		Sandboxes:            kr,
		Access:               c,
		DataPlane:            dataPlane,
		Cluster:              &lateCluster{},
		Limits: mcp.Limits{CallsPerSecond: m.CallsPerSecond, CallBurst: max(1, int(math.Ceil(2*m.CallsPerSecond))), ConcurrentCalls: m.ConcurrentCalls,
			SessionsPerCaller: m.SessionsPerCaller, CommandTimeout: m.CommandTimeout},
		Metrics: mcp.NewMetrics(reg),
		Log:     log.With("component", "mcp"),
	}
	if mt, ok := minter.(*access.Minter); ok {
		opts.Previews = mt
	}
	// The Sandbox API version the caller's writes use is the one the
	// resolver found served: known once it has synced.
	late := opts.Cluster.(*lateCluster)
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-kr.SyncedC():
		}
		versions := kr.Versions()
		if len(versions) == 0 {
			log.Error("mcp: no Sandbox API version served: the tools that change sandboxes are off")
			late.off(errors.New("no Sandbox API version is served"))
			return
		}
		cl, err := mcpkube.New(mcpkube.Options{Config: restCfg, SandboxVersion: versions[0], ClaimVersion: m.ClaimVersion})
		if err != nil {
			log.Error("mcp: the tools that change sandboxes are off", "err", err)
			late.off(err)
			return
		}
		late.cluster.Store(cl)
	}()
	h, err := mcp.New(opts)
	if err != nil {
		return nil, err
	}
	go func() { _ = h.Run(ctx) }()
	log.Info("MCP endpoint on", "host", m.Host, "url", public.String()+mcp.Path)
	return h, nil
}

// lateCluster is the caller-credential client once the Sandbox API
// version is known; until then its calls fail as unavailable, and for
// good if it could not be built.
type lateCluster struct {
	cluster atomic.Pointer[mcpkube.Cluster]
	failed  atomic.Pointer[error]
}

var errClusterNotReady = fmt.Errorf("%w: the router has not discovered the Sandbox API yet", mcp.ErrUnavailable)

func (l *lateCluster) off(err error) {
	err = fmt.Errorf("this router cannot change sandboxes (%v): ask its operator", err)
	l.failed.Store(&err)
}

func (l *lateCluster) get() (*mcpkube.Cluster, error) {
	if c := l.cluster.Load(); c != nil {
		return c, nil
	}
	if err := l.failed.Load(); err != nil {
		return nil, *err
	}
	return nil, errClusterNotReady
}

func (l *lateCluster) SetSuspended(ctx context.Context, token, namespace, name string, suspended bool) error {
	c, err := l.get()
	if err != nil {
		return err
	}
	return c.SetSuspended(ctx, token, namespace, name, suspended)
}

func (l *lateCluster) CreateClaim(ctx context.Context, token, namespace, name, template string) error {
	c, err := l.get()
	if err != nil {
		return err
	}
	return c.CreateClaim(ctx, token, namespace, name, template)
}

func (l *lateCluster) ClaimedSandbox(ctx context.Context, token, namespace, claim string) (string, error) {
	c, err := l.get()
	if err != nil {
		return "", err
	}
	return c.ClaimedSandbox(ctx, token, namespace, claim)
}

func (l *lateCluster) Delete(ctx context.Context, token, namespace, name string) error {
	c, err := l.get()
	if err != nil {
		return err
	}
	return c.Delete(ctx, token, namespace, name)
}

func (l *lateCluster) ListNames(ctx context.Context, token, namespace, selector string, limit int64) ([]string, error) {
	c, err := l.get()
	if err != nil {
		return nil, err
	}
	return c.ListNames(ctx, token, namespace, selector, limit)
}
