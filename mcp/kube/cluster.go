package kube

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/sandbox-router/sandbox-router/mcp"
)

const (
	// SandboxGroup is the API group of Sandboxes.
	SandboxGroup = "agents.x-k8s.io"
	// ClaimGroup is the API group of SandboxClaims.
	ClaimGroup = "extensions.agents.x-k8s.io"
	// DefaultClaimVersion is Options.ClaimVersion when empty.
	DefaultClaimVersion = "v1beta1"
	// DefaultTimeout is Options.Timeout when zero.
	DefaultTimeout = 10 * time.Second
	// DefaultListLimit caps ListNames when its limit is not positive.
	DefaultListLimit = 500

	// cacheSize is how many callers' clients are kept.
	cacheSize = 256
	// clientQPS and clientBurst rate limit the API calls of one caller
	// (one token): a tool call makes one to four.
	clientQPS   = 10
	clientBurst = 20
	// maxTokenLen bounds a bearer token (a service-account JWT is about
	// 1 KiB; OIDC tokens with many groups can be a few).
	maxTokenLen = 16 << 10
)

// Options configure New.
type Options struct {
	// Config is the router's rest.Config: only its Host, APIPath and TLS
	// trust (CAFile/CAData/ServerName/Insecure) are used; its credentials
	// (BearerToken, BearerTokenFile, client cert/key, exec, auth provider,
	// impersonation) never are. Its UserAgent is kept when set.
	Config *rest.Config
	// SandboxVersion is the served version of agents.x-k8s.io sandboxes:
	// "v1beta1" (spec.operatingMode Running|Suspended) or "v1alpha1"
	// (spec.replicas 1|0). Required.
	SandboxVersion string
	// ClaimVersion of extensions.agents.x-k8s.io sandboxclaims (default
	// "v1beta1", whose spec.warmPoolRef.name names what to claim;
	// "v1alpha1" claims had spec.sandboxTemplateRef.name instead).
	ClaimVersion string
	// Timeout bounds one API call (default 10s).
	Timeout time.Duration
}

// Cluster acts on the cluster with each caller's own token. It is safe for
// concurrent use.
type Cluster struct {
	base      *rest.Config // Host, APIPath, TLS trust, limits; no credentials
	sandboxes schema.GroupVersionResource
	claims    schema.GroupVersionResource
	suspended bool // the sandboxes' version has spec.operatingMode (else spec.replicas)
	claimRef  string
	timeout   time.Duration
	clients   *lru.Cache[[sha256.Size]byte, *callerClients]
}

// callerClients are one caller's clients: they share one http.Client
// (whose transport adds the caller's token to each request, over
// client-go's shared TLS transport) and one rate limiter.
type callerClients struct {
	dyn  dynamic.Interface
	meta metadata.Interface
}

// New checks opts and keeps the parts of the router's config it may use.
func New(opts Options) (*Cluster, error) {
	if opts.Config == nil || opts.Config.Host == "" {
		return nil, errors.New("mcp/kube: Options.Config with a Host is required")
	}
	c := &Cluster{timeout: opts.Timeout}
	switch opts.SandboxVersion {
	case "v1beta1":
		c.suspended = true
	case "v1alpha1":
	default:
		return nil, fmt.Errorf("mcp/kube: Options.SandboxVersion %q: want v1beta1 or v1alpha1", opts.SandboxVersion)
	}
	switch opts.ClaimVersion {
	case "":
		opts.ClaimVersion = DefaultClaimVersion
		c.claimRef = "warmPoolRef"
	case "v1beta1":
		c.claimRef = "warmPoolRef"
	case "v1alpha1":
		c.claimRef = "sandboxTemplateRef"
	default:
		return nil, fmt.Errorf("mcp/kube: Options.ClaimVersion %q: want v1beta1 or v1alpha1", opts.ClaimVersion)
	}
	if c.timeout < 0 {
		return nil, fmt.Errorf("mcp/kube: Options.Timeout %s is negative", c.timeout)
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	c.sandboxes = schema.GroupVersionResource{Group: SandboxGroup, Version: opts.SandboxVersion, Resource: "sandboxes"}
	c.claims = schema.GroupVersionResource{Group: ClaimGroup, Version: opts.ClaimVersion, Resource: "sandboxclaims"}

	src := opts.Config
	c.base = &rest.Config{
		Host:    src.Host,
		APIPath: src.APIPath,
		TLSClientConfig: rest.TLSClientConfig{
			Insecure:   src.Insecure,
			ServerName: src.ServerName,
			CAFile:     src.CAFile,
			CAData:     slices.Clone(src.CAData),
		},
		UserAgent:      src.UserAgent,
		Timeout:        c.timeout,
		QPS:            clientQPS,
		Burst:          clientBurst,
		WarningHandler: rest.NoWarnings{},
	}
	if c.base.UserAgent == "" {
		c.base.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	// The TLS trust is checked (and a CA file read) once here, so that a
	// bad one fails at start-up rather than at a caller's first call.
	if _, err := rest.HTTPClientFor(c.base); err != nil {
		return nil, fmt.Errorf("mcp/kube: %w", err)
	}
	cache, err := lru.New[[sha256.Size]byte, *callerClients](cacheSize)
	if err != nil {
		return nil, fmt.Errorf("mcp/kube: %w", err)
	}
	c.clients = cache
	return c, nil
}

// clientsFor returns the clients of the caller whose token this is,
// authenticated by that token only.
func (c *Cluster) clientsFor(token string) (*callerClients, error) {
	if err := checkToken(token); err != nil {
		return nil, err
	}
	key := sha256.Sum256([]byte(token))
	if cl, ok := c.clients.Get(key); ok {
		return cl, nil
	}
	cfg := rest.CopyConfig(c.base)
	cfg.BearerToken = token
	cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: client: %w", mcp.ErrUnavailable, err)
	}
	dyn, err := dynamic.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("%w: client: %w", mcp.ErrUnavailable, err)
	}
	meta, err := metadata.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("%w: client: %w", mcp.ErrUnavailable, err)
	}
	cl := &callerClients{dyn: dyn, meta: meta}
	// Two first calls of one caller at once may both build clients; the
	// first one cached is the one both use from then on.
	if prev, ok, _ := c.clients.PeekOrAdd(key, cl); ok {
		return prev, nil
	}
	return cl, nil
}

// checkToken refuses what cannot be a caller's bearer token without
// saying anything of it: an empty token (the API server would take the
// request as system:anonymous), an overlong one, or one with bytes a
// header value must not hold.
func checkToken(token string) error {
	if token == "" {
		return fmt.Errorf("%w: no bearer token: the cluster is only acted on as the caller", mcp.ErrForbidden)
	}
	if len(token) > maxTokenLen {
		return fmt.Errorf("%w: bearer token longer than %d bytes", mcp.ErrForbidden, maxTokenLen)
	}
	for i := 0; i < len(token); i++ {
		if b := token[i]; b <= ' ' || b >= 0x7f {
			return fmt.Errorf("%w: bearer token holds a space, control or non-ASCII byte", mcp.ErrForbidden)
		}
	}
	return nil
}
