package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/router"
)

// config is every setting of the binary. Each has one name used as the
// flag (--name), the config-file key (name:) and, upper-cased with
// SANDBOX_ROUTER_ prefix and dashes as underscores, the environment
// variable. Precedence: flags > file > environment > defaults.
type config struct {
	ConfigFile string

	ListenHTTP  string
	ListenHTTPS string
	ListenAdmin string
	TLSCert     string
	TLSKey      string
	MTLSMode    string
	TLSClientCA string
	Pprof       bool

	Routes             string
	Kubeconfig         string
	Namespaces         []string
	SandboxVersions    []string
	BaseDomains        []string
	PathRoutingPrefix  string
	PodIPMode          string
	PodCIDRs           []string
	AllowLoopbackPodIP bool
	TrustedProxies     []string
	ForwardAuth        bool
	IdentityHeaders    bool
	MaxRequestBody     int64
	MaxClientTimeout   time.Duration

	ReadHeaderTimeout       time.Duration
	IdleTimeout             time.Duration
	MaxHeaderBytes          int
	MaxConcurrentStreams    int
	UpstreamDialTimeout     time.Duration
	UpstreamHeaderTimeout   time.Duration
	UpstreamIdleTimeout     time.Duration
	UpstreamMaxIdle         int
	UpstreamMaxIdleTotal    int
	UpstreamMaxConns        int
	UpstreamMaxConnWaiters  int
	UpstreamConnWaitTimeout time.Duration
	DialRetries             int

	// The connection budget (limits.go): 0 derives a cap from the
	// descriptor limit.
	MaxClientConns    int
	MaxTunnels        int
	MaxUpstreamConns  int
	DescriptorReserve int

	DrainDelay   time.Duration
	DrainTimeout time.Duration

	Activator             bool
	HoldTimeout           time.Duration
	MaxHeldPerSandbox     int
	MaxHeldTotal          int
	ReleaseConcurrency    int
	ReleaseOn             string
	ProbeInterval         time.Duration
	SandboxIdleTimeout    time.Duration
	NamespaceIdleTimeouts []string
	ActivityTick          time.Duration
	ActivatorQPS          float64

	LeaderElection          bool
	LeaderElectionNamespace string
	LeaderElectionName      string
	LeaderElectionIdentity  string
	LeaderLeaseDuration     time.Duration
	LeaderRenewDeadline     time.Duration
	LeaderRetryPeriod       time.Duration

	AuthzMode             string
	AuthzScopedSecretFile string
	AuthzScopedKeyDir     string
	AuthzAudiences        []string
	AuthzTokenTTL         time.Duration
	AuthzTokenNegTTL      time.Duration
	AuthzTokenCacheSize   int
	AuthzDecisionTTL      time.Duration
	AuthzDecisionNegTTL   time.Duration
	AuthzDecisionCacheSz  int
	AuthzStaleFor         time.Duration
	AuthzQPS              float64
	AuthzCookieName       string
	AuthzCookieQueryParam string
	AuthzCookieSameSite   string
	AuthzCookieOrigins    []string
	AuthzTrustFwdProto    bool
	AuthzMintKey          string
	AuthzMintKeyID        string
	AuthzMintPublicURL    string
	AuthzMintDefaultTTL   time.Duration
	AuthzMintMaxTTL       time.Duration

	LimitIdentityRPS       float64
	LimitIdentityBurst     int
	LimitSandboxRPS        float64
	LimitSandboxBurst      int
	LimitSandboxConcurrent int
	LimitFailedAuthPerMin  float64
	LimitFailedAuthBurst   int
	LimitTableSize         int

	XDS       xdsConfig
	MCP       mcpConfig
	Dashboard dashboardConfig

	AccessLog string
	LogLevel  string
}

const envPrefix = "SANDBOX_ROUTER_"

// listFlag is a comma-separated or repeated list. The first Set replaces
// the default instead of appending to it.
type listFlag struct {
	dst *[]string
	set bool
}

func (l *listFlag) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.dst = nil
		l.set = true
	}
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l.dst = append(*l.dst, part)
		}
	}
	return nil
}

func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("sandbox-router", flag.ContinueOnError)
	fs.StringVar(&c.ConfigFile, "config", "", "YAML config file; keys are the flag names")
	fs.StringVar(&c.ListenHTTP, "listen-http", ":8080", "proxy listener for HTTP/1.1 and h2c; empty disables")
	fs.StringVar(&c.ListenHTTPS, "listen-https", "", "proxy listener for HTTPS (HTTP/1.1 and h2); needs tls-cert and tls-key")
	fs.StringVar(&c.ListenAdmin, "listen-admin", ":9090", "admin listener: /healthz, /readyz, /metrics, pprof")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (PEM), reloaded on change")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key file (PEM), reloaded on change")
	fs.StringVar(&c.MTLSMode, "mtls-mode", "off", "client certificates on the HTTPS listener: off, optional (verified when sent) or required; a verified certificate's CN is a user and its O the groups, as Kubernetes reads x509 users (authz-mode tokenreview or kubernetes)")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca-file", "", "CA bundle (PEM) that verifies client certificates, reloaded on change; needed by mtls-mode optional and required")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof on the admin listener")
	fs.StringVar(&c.Routes, "routes", "", "static routes YAML file, reloaded on change; selects the static resolver instead of the cluster")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to watch; empty = in-cluster service account")
	fs.Var(&listFlag{dst: &c.Namespaces}, "namespaces", "namespaces to watch (namespaced RBAC is then enough); empty = all")
	fs.Var(&listFlag{dst: &c.SandboxVersions}, "sandbox-versions", "Sandbox API versions to watch (v1beta1, v1alpha1); empty = every served one")
	fs.Var(&listFlag{dst: &c.BaseDomains}, "base-domain", "base domain for host routing (<port>-<id>.<ns>.<domain>); repeat or comma-separate")
	fs.StringVar(&c.PathRoutingPrefix, "path-routing-prefix", "", "path routing for clusters without wildcard DNS: <prefix>/<namespace>/<id>/<port>/<rest> reaches that sandbox port with /<rest>; e.g. /sandboxes; empty = off. Every sandbox then shares the router's origin: prefer base-domain for browsers (docs/security.md)")
	fs.StringVar(&c.PodIPMode, "pod-ip-header", "resolver", "X-Sandbox-Pod-IP handling: resolver (validate, route by resolver), direct (dial it), off (ignore)")
	fs.Var(&listFlag{dst: &c.PodCIDRs}, "pod-cidrs", "pod network CIDRs that --pod-ip-header=direct may dial (required for direct)")
	fs.BoolVar(&c.AllowLoopbackPodIP, "allow-loopback-pod-ip", false, "admit loopback pod addresses (tests and local demo only)")
	fs.Var(&listFlag{dst: &c.TrustedProxies}, "trusted-proxies", "CIDRs whose X-Forwarded-* headers are kept")
	fs.BoolVar(&c.ForwardAuth, "forward-authorization", false, "forward the client's Authorization header to the sandbox")
	fs.BoolVar(&c.IdentityHeaders, "authz-identity-headers", false, "tell the sandbox who called: X-Sandbox-Caller-User, -Groups and -Auth, set by the router (clients' copies are always removed)")
	fs.Int64Var(&c.MaxRequestBody, "max-request-body-bytes", 0, "reject larger request bodies with 413; 0 = unlimited")
	fs.DurationVar(&c.MaxClientTimeout, "max-client-timeout", time.Hour, "the longest deadline a client may ask for with X-Sandbox-Timeout; longer asks get this one")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "time a client has to send request headers")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 620*time.Second, "keep-alive idle timeout for client connections (above the 600s of common load balancers)")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", 64<<10, "maximum size of request headers")
	fs.IntVar(&c.MaxConcurrentStreams, "max-concurrent-streams", 250, "HTTP/2 streams per client connection")
	fs.DurationVar(&c.UpstreamDialTimeout, "upstream-dial-timeout", 3*time.Second, "timeout of one connect to a sandbox")
	fs.DurationVar(&c.UpstreamHeaderTimeout, "upstream-response-header-timeout", 0, "time a sandbox has to start its response; 0 = no limit")
	fs.DurationVar(&c.UpstreamIdleTimeout, "upstream-idle-timeout", 30*time.Second, "close idle sandbox connections after this long")
	fs.IntVar(&c.UpstreamMaxIdle, "upstream-max-idle-per-endpoint", 256, "idle keep-alive connections kept per sandbox endpoint (at most upstream-max-conns-per-endpoint)")
	fs.IntVar(&c.UpstreamMaxIdleTotal, "upstream-max-idle-total", 10000, "idle keep-alive connections kept in all")
	fs.IntVar(&c.MaxClientConns, "max-client-connections", 0, "client connections on the data listeners (tunnels included); past it new ones are refused with 503 connection_limit (TLS: closed). 0: half of the descriptor limit less the reserve")
	fs.IntVar(&c.MaxTunnels, "max-tunnels", 0, "open tunnels (WebSocket and other upgrades); past it upgrades get 503 tunnel_limit. 0: the client connection cap")
	fs.IntVar(&c.MaxUpstreamConns, "max-upstream-connections", 0, "connections to sandboxes (pooled, h2c, tunnels); past it requests needing a new one get 503 upstream_connection_limit. 0: the descriptor limit less the reserve and the client cap")
	fs.IntVar(&c.DescriptorReserve, "descriptor-reserve", 256, "file descriptors kept out of the connection caps for the admin listener, the API server, logs, certificates and the refused connections being answered (at most 64)")
	fs.IntVar(&c.UpstreamMaxConns, "upstream-max-conns-per-endpoint", 256, "connections open to one sandbox endpoint (idle, in use, dialing); more requests wait for one")
	fs.IntVar(&c.UpstreamMaxConnWaiters, "upstream-max-conn-waiters-per-endpoint", 1024, "requests that may wait for a connection to one endpoint at its cap; more get 503 upstream_busy")
	fs.DurationVar(&c.UpstreamConnWaitTimeout, "upstream-conn-wait-timeout", 5*time.Second, "how long a request waits for a connection at the cap before 503 upstream_busy")
	fs.IntVar(&c.DialRetries, "dial-retries", 3, "retries of a failed connect, with backoff inside the request deadline")
	fs.DurationVar(&c.DrainDelay, "drain-delay", 5*time.Second, "on SIGTERM, how long /readyz fails before listeners close")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long in-flight requests may take")
	fs.BoolVar(&c.Activator, "activator", true, "hold requests for suspended sandboxes and resume them, suspend idle ones (cluster resolver only)")
	fs.DurationVar(&c.HoldTimeout, "hold-timeout", 60*time.Second, "how long a request waits for its sandbox to resume (annotation sandbox-router.dev/hold-timeout overrides)")
	fs.IntVar(&c.MaxHeldPerSandbox, "max-held-per-sandbox", 1000, "requests held for one sandbox; more get 503 with Retry-After")
	fs.IntVar(&c.MaxHeldTotal, "max-held-total", 10000, "requests held in all; more get 503 with Retry-After")
	fs.IntVar(&c.ReleaseConcurrency, "release-concurrency", 100, "released requests of one sandbox that may await their response head at once")
	fs.StringVar(&c.ReleaseOn, "release-on", "probe", "when held requests go to a starting pod: probe (the router's first successful run of the pod's readiness probe, before Kubernetes says Ready) or ready (annotation sandbox-router.dev/release-on overrides)")
	fs.DurationVar(&c.ProbeInterval, "probe-interval", 10*time.Millisecond, "how often a starting pod is probed while held requests wait for it (its first 10s with an address; every 100ms after)")
	fs.DurationVar(&c.SandboxIdleTimeout, "sandbox-idle-timeout", 0, "suspend sandboxes idle this long; 0 = never (annotation sandbox-router.dev/idle-timeout overrides)")
	fs.Var(&listFlag{dst: &c.NamespaceIdleTimeouts}, "namespace-idle-timeouts", "per-namespace idle timeouts, namespace=duration, over sandbox-idle-timeout")
	fs.DurationVar(&c.ActivityTick, "activity-tick", time.Second, "how often activity is published to the other replicas (at most one write per sandbox per report interval: a quarter of its idle timeout, between 1s and 5m)")
	fs.Float64Var(&c.ActivatorQPS, "activator-qps", 50, "API requests per second for resume, suspend and activity writes (burst twice that)")
	fs.BoolVar(&c.LeaderElection, "leader-election", true, "elect one replica (Lease) to suspend idle sandboxes; off only for a single replica")
	fs.StringVar(&c.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the Lease; empty = $POD_NAMESPACE, else sandbox-router")
	fs.StringVar(&c.LeaderElectionName, "leader-election-name", "sandbox-router-idle-suspender", "name of the Lease")
	fs.StringVar(&c.LeaderElectionIdentity, "leader-election-identity", "", "this replica's identity in the Lease; empty = $POD_NAME, else host name and a random suffix")
	fs.DurationVar(&c.LeaderLeaseDuration, "leader-lease-duration", 15*time.Second, "how long a lead lasts without renewal (the hand-over time after a crash)")
	fs.DurationVar(&c.LeaderRenewDeadline, "leader-renew-deadline", 10*time.Second, "how long the leader retries renewing before it gives up the lead")
	fs.DurationVar(&c.LeaderRetryPeriod, "leader-retry-period", 2*time.Second, "interval between election attempts")
	fs.StringVar(&c.AuthzMode, "authz-mode", "allow-all", "who may reach which sandbox: allow-all (anyone who reaches the router), tokenreview (any bearer token the API server authenticates), kubernetes (TokenReview, then RBAC per sandbox: create on sandboxes/proxy), scoped-token (tokens signed for one sandbox); scoped-token combines with either of the others: kubernetes,scoped-token")
	fs.StringVar(&c.AuthzScopedSecretFile, "authz-scoped-token-secret-file", "", "v1 scoped tokens (the upstream router's): the shared HMAC secret, reloaded on change")
	fs.StringVar(&c.AuthzScopedKeyDir, "authz-scoped-token-public-keys", "", "v2 scoped tokens: a directory of Ed25519 public keys, <key id>.pem, reloaded on change (several at once to rotate)")
	fs.Var(&listFlag{dst: &c.AuthzAudiences}, "authz-tokenreview-audiences", "audiences a bearer token must be meant for (TokenReview); empty = the API server's own")
	fs.DurationVar(&c.AuthzTokenTTL, "authz-tokenreview-ttl", 2*time.Minute, "how long an authenticated token is trusted before it is reviewed again")
	fs.DurationVar(&c.AuthzTokenNegTTL, "authz-tokenreview-negative-ttl", 10*time.Second, "how long a refused token stays refused before it is reviewed again")
	fs.IntVar(&c.AuthzTokenCacheSize, "authz-tokenreview-cache-size", 10000, "tokens remembered (LRU)")
	fs.DurationVar(&c.AuthzDecisionTTL, "authz-decision-ttl", 30*time.Second, "how long a per-sandbox RBAC decision is kept: the longest a removed RoleBinding keeps working")
	fs.DurationVar(&c.AuthzDecisionNegTTL, "authz-decision-negative-ttl", 5*time.Second, "how long a per-sandbox refusal is kept")
	fs.IntVar(&c.AuthzDecisionCacheSz, "authz-decision-cache-size", 100000, "per-sandbox decisions remembered (LRU)")
	fs.DurationVar(&c.AuthzStaleFor, "authz-stale-for", 10*time.Minute, "how long past their time to live answers keep serving while the API server cannot be reached (uncached requests get 503)")
	fs.Float64Var(&c.AuthzQPS, "authz-qps", 100, "TokenReview and SubjectAccessReview calls per second (burst twice that)")
	fs.StringVar(&c.AuthzCookieName, "authz-cookie-name", "", "browser sessions: the session cookie's name (__Host-<name> over HTTPS for host routing, __Secure-<name> for path routing); entry links (?<authz-cookie-query-param>=<token>) to sandboxes reached by host name or path set it; empty = off")
	fs.StringVar(&c.AuthzCookieQueryParam, "authz-cookie-query-param", access.DefaultEntryParam, "the query parameter of entry links")
	fs.StringVar(&c.AuthzCookieSameSite, "authz-cookie-samesite", "lax", "the session cookie's SameSite: lax, strict or none (none only over HTTPS)")
	fs.Var(&listFlag{dst: &c.AuthzCookieOrigins}, "authz-cookie-allowed-origins", "origins (scheme://host[:port]) besides the sandbox's own that may send cookie-authenticated unsafe requests and WebSocket handshakes")
	fs.BoolVar(&c.AuthzTrustFwdProto, "authz-trust-forwarded-proto", false, "read the scheme for sessions from X-Forwarded-Proto (only behind a proxy that sets it and strips clients')")
	fs.StringVar(&c.AuthzMintKey, "authz-mint-signing-key", "", "serve POST "+access.MintPath+" on the router's own host: a caller Kubernetes lets reach a sandbox gets a short-lived v2 scoped token for it, signed with this Ed25519 private key (PEM PKCS #8, e.g. from sandbox-router keygen); needs authz-mode kubernetes,scoped-token with the key's public half in authz-scoped-token-public-keys")
	fs.StringVar(&c.AuthzMintKeyID, "authz-mint-key-id", "", "the signing key's id; empty = the key file's name without .key")
	fs.StringVar(&c.AuthzMintPublicURL, "authz-mint-public-url", "", "where users reach the router (scheme://host[:port]), for the entry links of minted tokens; empty = the scheme and host the minting caller used")
	fs.DurationVar(&c.AuthzMintDefaultTTL, "authz-mint-default-ttl", 15*time.Minute, "the life of a minted token when the request names none")
	fs.DurationVar(&c.AuthzMintMaxTTL, "authz-mint-max-ttl", time.Hour, "the longest life a request may ask for: a RoleBinding removed does not revoke tokens already minted")
	fs.Float64Var(&c.LimitIdentityRPS, "limit-identity-rps", 0, "requests per second one identity may send (the client address when anonymous); 0 = no limit; past it 429 rate_limited")
	fs.IntVar(&c.LimitIdentityBurst, "limit-identity-burst", 100, "requests one identity may send at once above limit-identity-rps")
	fs.Float64Var(&c.LimitSandboxRPS, "limit-sandbox-rps", 0, "requests per second one sandbox may receive, whoever sends them; 0 = no limit")
	fs.IntVar(&c.LimitSandboxBurst, "limit-sandbox-burst", 200, "requests one sandbox may receive at once above limit-sandbox-rps")
	fs.IntVar(&c.LimitSandboxConcurrent, "limit-sandbox-concurrency", 0, "requests in progress to one sandbox (streams and WebSockets for their life); 0 = no limit; past it 429 sandbox_busy")
	fs.Float64Var(&c.LimitFailedAuthPerMin, "limit-failed-auth-per-minute", 30, "refused credentials (401) one client address may send per minute before it gets 429 too_many_failed_credentials; 0 = no limit")
	fs.IntVar(&c.LimitFailedAuthBurst, "limit-failed-auth-burst", 30, "refused credentials one client address may send at once")
	fs.IntVar(&c.LimitTableSize, "limit-table-size", 100000, "identities, addresses and sandboxes each limit remembers (LRU)")
	c.XDS.flags(fs)
	c.MCP.flags(fs)
	c.Dashboard.flags(fs)
	fs.StringVar(&c.AccessLog, "access-log", "stdout", "access log destination: stdout, stderr, off, or a file path (true and false, as upstream's boolean flag: stdout and off)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	return fs
}

// loadConfig applies defaults, environment, config file and flags in
// increasing precedence, then validates the result.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := newFlagSet(c)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fromFlags := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { fromFlags[f.Name] = true })

	// Rebuild from defaults so that lower layers cannot undo flags.
	flagArgs := args
	c2 := &config{}
	fs2 := newFlagSet(c2)
	fs2.SetOutput(io.Discard)
	configFile := c.ConfigFile
	if !fromFlags["config"] {
		configFile = getenv(envPrefix + "CONFIG")
	}

	var fileKeys map[string][]string
	if configFile != "" {
		var err error
		if fileKeys, err = readConfigFile(configFile); err != nil {
			return nil, err
		}
		for k := range fileKeys {
			if fs2.Lookup(k) == nil || k == "config" {
				return nil, fmt.Errorf("config file %s: unknown key %q", configFile, k)
			}
		}
	}
	var setErr error
	fs2.VisitAll(func(f *flag.Flag) {
		if setErr != nil || fromFlags[f.Name] || f.Name == "config" {
			return
		}
		if vals, ok := fileKeys[f.Name]; ok {
			for _, v := range vals {
				if err := fs2.Set(f.Name, v); err != nil {
					setErr = fmt.Errorf("config file %s: invalid value %q for %s: %v", configFile, v, f.Name, err)
					return
				}
			}
			return
		}
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if err := fs2.Set(f.Name, v); err != nil {
				setErr = fmt.Errorf("environment %s: invalid value %q: %v", env, v, err)
			}
		}
	})
	if setErr != nil {
		return nil, setErr
	}
	if err := fs2.Parse(flagArgs); err != nil {
		return nil, err
	}
	c2.ConfigFile = configFile
	if err := c2.validate(); err != nil {
		return nil, err
	}
	return c2, nil
}

// readConfigFile returns each key's values as strings, as if given on the
// command line; a YAML list becomes repeated values.
func readConfigFile(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	out := make(map[string][]string, len(raw))
	for k, n := range raw {
		switch n.Kind {
		case yaml.ScalarNode:
			out[k] = []string{n.Value}
		case yaml.SequenceNode:
			vals := []string{}
			for _, item := range n.Content {
				if item.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("config file %s: %s: list items must be scalars", path, k)
				}
				vals = append(vals, item.Value)
			}
			out[k] = vals
		default:
			return nil, fmt.Errorf("config file %s: %s: expected a value or a list", path, k)
		}
	}
	return out, nil
}

func (c *config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.ListenHTTP == "" && c.ListenHTTPS == "" {
		bad("at least one of listen-http and listen-https is required")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert and tls-key must be given together")
	}
	switch c.MTLSMode {
	case "off":
		if c.TLSClientCA != "" {
			bad("tls-client-ca-file needs mtls-mode optional or required")
		}
	case "optional", "required":
		if c.ListenHTTPS == "" || c.TLSClientCA == "" {
			bad("mtls-mode=%s needs listen-https and tls-client-ca-file", c.MTLSMode)
		}
	default:
		bad("mtls-mode: %q is not off, optional or required", c.MTLSMode)
	}
	if c.ListenHTTPS != "" && c.TLSCert == "" {
		bad("listen-https needs tls-cert and tls-key")
	}
	for _, a := range []struct{ name, v string }{{"listen-http", c.ListenHTTP}, {"listen-https", c.ListenHTTPS}, {"listen-admin", c.ListenAdmin}} {
		if a.v != "" {
			checkListen(a.name, a.v, bad)
		}
	}
	switch c.PodIPMode {
	case "resolver", "off":
	case "direct":
		if len(c.PodCIDRs) == 0 {
			bad("pod-ip-header=direct needs pod-cidrs: without them a client could make the router dial any address")
		}
	default:
		bad("pod-ip-header: %q is not resolver, direct or off", c.PodIPMode)
	}
	for _, p := range c.PodCIDRs {
		if _, err := netip.ParsePrefix(p); err != nil {
			bad("pod-cidrs: %q: %v", p, err)
		}
	}
	for _, p := range c.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			bad("trusted-proxies: %q: %v", p, err)
		}
	}
	if c.PathRoutingPrefix != "" && !router.ValidPathPrefix(c.PathRoutingPrefix) {
		bad("path-routing-prefix: %q is not /<segment>[/<segment>...] of letters, digits, '-', '_', '.' and '~' without a trailing /", c.PathRoutingPrefix)
	}
	for _, d := range c.BaseDomains {
		if strings.ContainsAny(d, " /:*") {
			bad("base-domain: %q is not a domain name", d)
		}
	}
	if c.MaxRequestBody < 0 {
		bad("max-request-body-bytes must not be negative")
	}
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"read-header-timeout", c.ReadHeaderTimeout}, {"idle-timeout", c.IdleTimeout},
		{"upstream-dial-timeout", c.UpstreamDialTimeout}, {"upstream-idle-timeout", c.UpstreamIdleTimeout},
		{"drain-timeout", c.DrainTimeout}, {"max-client-timeout", c.MaxClientTimeout},
		{"upstream-conn-wait-timeout", c.UpstreamConnWaitTimeout},
	}
	for _, p := range positive {
		if p.d <= 0 {
			bad("%s must be positive", p.name)
		}
	}
	if c.UpstreamHeaderTimeout < 0 || c.DrainDelay < 0 {
		bad("upstream-response-header-timeout and drain-delay must not be negative")
	}
	if c.MaxHeaderBytes < 1024 {
		bad("max-header-bytes must be at least 1024")
	}
	if c.MaxConcurrentStreams < 1 || c.UpstreamMaxIdle < 1 || c.UpstreamMaxIdleTotal < 1 || c.UpstreamMaxConns < 1 || c.UpstreamMaxConnWaiters < 1 {
		bad("max-concurrent-streams, upstream-max-idle-per-endpoint, upstream-max-idle-total, upstream-max-conns-per-endpoint and upstream-max-conn-waiters-per-endpoint must be at least 1")
	}
	if c.MaxClientConns < 0 || c.MaxTunnels < 0 || c.MaxUpstreamConns < 0 || c.DescriptorReserve < 0 {
		bad("max-client-connections, max-tunnels, max-upstream-connections and descriptor-reserve must not be negative")
	}
	if c.DialRetries < 0 || c.DialRetries > 10 {
		bad("dial-retries must be between 0 and 10")
	}
	c.XDS.validate(c, bad)
	c.MCP.validate(c, bad)
	c.Dashboard.validate(c, bad)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level: %q is not debug, info, warn or error", c.LogLevel)
	}
	if c.Routes != "" && (c.Kubeconfig != "" || len(c.Namespaces) > 0 || len(c.SandboxVersions) > 0) {
		bad("routes selects the static resolver; it cannot be combined with kubeconfig, namespaces or sandbox-versions")
	}
	for _, ns := range c.Namespaces {
		if !resolver.IsDNSLabel(ns) {
			bad("namespaces: %q is not a namespace name", ns)
		}
	}
	// A namespace listed twice would run two informer sets for it.
	slices.Sort(c.Namespaces)
	c.Namespaces = slices.Compact(c.Namespaces)
	for _, v := range c.SandboxVersions {
		if v != "v1beta1" && v != "v1alpha1" {
			bad("sandbox-versions: %q is not v1beta1 or v1alpha1", v)
		}
	}
	c.validateActivator(bad)
	c.validateAuthz(bad)
	return errors.Join(errs...)
}

func (c *config) validateActivator(bad func(string, ...any)) {
	if c.HoldTimeout <= 0 || c.ActivityTick <= 0 || c.LeaderRetryPeriod <= 0 {
		bad("hold-timeout, activity-tick and leader-retry-period must be positive")
	}
	if c.MaxHeldPerSandbox < 1 || c.MaxHeldTotal < 1 || c.ReleaseConcurrency < 1 {
		bad("max-held-per-sandbox, max-held-total and release-concurrency must be at least 1")
	}
	if _, ok := resolver.ParseRelease(c.ReleaseOn); !ok {
		bad("release-on: %q is not probe or ready", c.ReleaseOn)
	}
	if c.ProbeInterval < time.Millisecond || c.ProbeInterval > time.Second {
		bad("probe-interval: %v is not within 1ms and 1s", c.ProbeInterval)
	}
	if c.SandboxIdleTimeout < 0 {
		bad("sandbox-idle-timeout must not be negative")
	}
	if c.ActivatorQPS <= 0 {
		bad("activator-qps must be positive")
	}
	if _, err := parseNamespaceTimeouts(c.NamespaceIdleTimeouts); err != nil {
		bad("namespace-idle-timeouts: %v", err)
	}
	if c.LeaderElectionNamespace != "" && !resolver.IsDNSLabel(c.LeaderElectionNamespace) {
		bad("leader-election-namespace: %q is not a namespace name", c.LeaderElectionNamespace)
	}
	// client-go's own rule: the lead must be renewed before it lapses,
	// with room for more than one try.
	if c.LeaderRenewDeadline >= c.LeaderLeaseDuration || c.LeaderRetryPeriod*12/10 >= c.LeaderRenewDeadline {
		bad("leader election needs leader-retry-period*1.2 < leader-renew-deadline < leader-lease-duration")
	}
}

func (c *config) validateAuthz(bad func(string, ...any)) {
	modes, err := access.ParseModes(c.AuthzMode)
	if err != nil {
		bad("authz-mode: %v", err)
		return
	}
	scopedOn := slices.Contains(modes, access.ModeScopedToken)
	if scopedOn != (c.AuthzScopedSecretFile != "" || c.AuthzScopedKeyDir != "") {
		bad("authz-mode scoped-token and authz-scoped-token-secret-file or authz-scoped-token-public-keys go together")
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"authz-tokenreview-ttl", c.AuthzTokenTTL}, {"authz-tokenreview-negative-ttl", c.AuthzTokenNegTTL},
		{"authz-decision-ttl", c.AuthzDecisionTTL}, {"authz-decision-negative-ttl", c.AuthzDecisionNegTTL},
		{"authz-stale-for", c.AuthzStaleFor},
	} {
		if d.d <= 0 {
			bad("%s must be positive", d.name)
		}
	}
	if c.LimitIdentityRPS < 0 || c.LimitSandboxRPS < 0 || c.LimitFailedAuthPerMin < 0 || c.LimitSandboxConcurrent < 0 {
		bad("limit-identity-rps, limit-sandbox-rps, limit-failed-auth-per-minute and limit-sandbox-concurrency must not be negative")
	}
	if c.LimitIdentityBurst < 1 || c.LimitSandboxBurst < 1 || c.LimitFailedAuthBurst < 1 || c.LimitTableSize < 1 {
		bad("limit-identity-burst, limit-sandbox-burst, limit-failed-auth-burst and limit-table-size must be at least 1")
	}
	if c.AuthzTokenCacheSize < 1 || c.AuthzDecisionCacheSz < 1 || c.AuthzQPS <= 0 {
		bad("authz-tokenreview-cache-size, authz-decision-cache-size and authz-qps must be positive")
	}
	if slices.Equal(modes, []access.Mode{access.ModeAllowAll}) {
		if c.AuthzCookieName != "" {
			bad("authz-cookie-name needs an authz-mode that checks credentials")
		}
		if c.AuthzMintKey != "" {
			bad("authz-mint-signing-key needs authz-mode kubernetes,scoped-token")
		}
		return
	}
	if c.AuthzCookieName != "" {
		if len(c.BaseDomains) == 0 && c.PathRoutingPrefix == "" {
			bad("authz-cookie-name needs base-domain or path-routing-prefix: browser sessions are for sandboxes reached by host name or path")
		}
		if !validCookieName(c.AuthzCookieName) || strings.HasPrefix(c.AuthzCookieName, "__") {
			bad("authz-cookie-name: %q is not a cookie name", c.AuthzCookieName)
		}
		if !validCookieName(c.AuthzCookieQueryParam) {
			bad("authz-cookie-query-param: %q is not a query parameter name", c.AuthzCookieQueryParam)
		}
		if _, ok := sameSiteModes[c.AuthzCookieSameSite]; !ok {
			bad("authz-cookie-samesite: %q is not lax, strict or none", c.AuthzCookieSameSite)
		}
		if c.AuthzCookieSameSite == "none" && c.ListenHTTPS == "" && !c.AuthzTrustFwdProto {
			bad("authz-cookie-samesite=none needs HTTPS (listen-https, or authz-trust-forwarded-proto behind a TLS proxy): browsers drop a SameSite=None cookie that is not Secure")
		}
		for _, o := range c.AuthzCookieOrigins {
			if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
				bad("authz-cookie-allowed-origins: %q is not scheme://host[:port]", o)
			}
		}
	}
	if c.AuthzMintKey != "" {
		if !slices.Contains(modes, access.ModeKubernetes) || c.AuthzScopedKeyDir == "" {
			bad("authz-mint-signing-key needs authz-mode kubernetes,scoped-token with authz-scoped-token-public-keys: Kubernetes authorizes who mints, the public keys verify what was minted")
		}
		if c.AuthzMintDefaultTTL < access.MinMintTTL || c.AuthzMintMaxTTL < c.AuthzMintDefaultTTL {
			bad("authz-mint-default-ttl must be at least %s and at most authz-mint-max-ttl", access.MinMintTTL)
		}
		if kid := c.mintKeyID(); !validKeyID(kid) {
			bad("authz-mint-key-id %q: the verifier finds keys by <id>.pem; use letters, digits, '-', '_' and '.', not first", kid)
		}
		if p := c.PathRoutingPrefix; p != "" && strings.HasPrefix(access.MintPath+"/", p+"/") {
			bad("path-routing-prefix %s covers the minting endpoint %s", p, access.MintPath)
		}
		if c.AuthzMintPublicURL != "" {
			if u, err := url.Parse(c.AuthzMintPublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
				(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
				bad("authz-mint-public-url: %q is not scheme://host[:port]", c.AuthzMintPublicURL)
			}
		}
	} else if c.AuthzMintPublicURL != "" || c.AuthzMintKeyID != "" {
		bad("authz-mint-public-url and authz-mint-key-id need authz-mint-signing-key")
	}
	if c.Routes != "" && (slices.Contains(modes, access.ModeTokenReview) || slices.Contains(modes, access.ModeKubernetes)) {
		bad("authz-mode=%s reviews tokens with the cluster's API server; it needs the cluster resolver, not routes", c.AuthzMode)
	}
	if c.PodIPMode == "direct" {
		bad("authz-mode=%s cannot be combined with pod-ip-header=direct: a client must never make the router dial an address it chose", c.AuthzMode)
	}
	if c.ForwardAuth {
		bad("authz-mode=%s cannot be combined with forward-authorization: the router's credential never reaches the sandbox", c.AuthzMode)
	}
}

// mintKeyID is the minting key's id: given, or the key file's name
// without .key.
func (c *config) mintKeyID() string {
	if c.AuthzMintKeyID != "" {
		return c.AuthzMintKeyID
	}
	return strings.TrimSuffix(filepath.Base(c.AuthzMintKey), ".key")
}

// validCookieName reports whether s is an RFC 6265 cookie name (a token).
// sameSiteModes are the values of --authz-cookie-samesite.
var sameSiteModes = map[string]http.SameSite{"lax": http.SameSiteLaxMode, "strict": http.SameSiteStrictMode, "none": http.SameSiteNoneMode}

func validCookieName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", rune(c)) {
			return false
		}
	}
	return true
}

// parseNamespaceTimeouts reads namespace=duration pairs.
func parseNamespaceTimeouts(pairs []string) (map[string]time.Duration, error) {
	out := make(map[string]time.Duration, len(pairs))
	for _, p := range pairs {
		ns, v, ok := strings.Cut(p, "=")
		if !ok || !resolver.IsDNSLabel(ns) {
			return nil, fmt.Errorf("%q is not namespace=duration", p)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q: the duration must be like 10m, 0 for never", p)
		}
		if _, dup := out[ns]; dup {
			return nil, fmt.Errorf("namespace %s given twice", ns)
		}
		out[ns] = d
	}
	return out, nil
}

// checkListen checks a listener's address flag: host:port, a port of
// 0-65535.
func checkListen(name, addr string, bad func(string, ...any)) {
	if _, port, err := splitHostPort(addr); err != nil {
		bad("%s: %q is not host:port: %v", name, addr, err)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("%s: %q has an invalid port", name, addr)
	}
}

func splitHostPort(s string) (string, string, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", errors.New("missing port")
	}
	return s[:i], s[i+1:], nil
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
