package mcp

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// Path is where the endpoint is served on its host.
const Path = "/mcp"

// Sandboxes is the router's view of the cluster (resolver/kube).
type Sandboxes interface {
	Lookup(key resolver.Key) resolver.Result
	Synced() bool
	// Snapshot is every sandbox (and unclaimed warm-pool pod) known.
	Snapshot() []resolver.Result
	// Subscribe is the feed of changed sandboxes.
	Subscribe() resolver.Feed
	// Changed fires once when key changes next; stop releases it.
	Changed(key resolver.Key) (<-chan struct{}, func())
}

// Access authenticates callers and answers who reaches what
// (access.Checker).
type Access interface {
	Authenticate(ctx context.Context, token string, client netip.Addr) (access.Principal, error)
	Reaches(ctx context.Context, p access.Principal, sandbox resolver.Key) (bool, error)
}

// Cluster changes sandboxes with the caller's own Kubernetes token
// (mcp/kube), so that RBAC judges the caller and the audit log names them.
type Cluster interface {
	SetSuspended(ctx context.Context, token, namespace, name string, suspended bool) error
	CreateClaim(ctx context.Context, token, namespace, name, template string) error
	// ClaimedSandbox waits (ctx bounds it) until the claim names its
	// sandbox: the claim's own name, or a warm sandbox's it adopted.
	ClaimedSandbox(ctx context.Context, token, namespace, claim string) (string, error)
	Delete(ctx context.Context, token, namespace, name string) error
	ListNames(ctx context.Context, token, namespace, labelSelector string, limit int64) ([]string, error)
}

// Previews mints short-lived browser links (access.Minter).
type Previews interface {
	Preview(ctx context.Context, p access.Principal, req access.MintRequest, client netip.Addr, r *http.Request) (*access.MintResponse, error)
}

// Options configure New. Zero limits take the defaults of Limits.
type Options struct {
	// PublicURL is where clients reach the endpoint's host
	// (https://mcp.example.com): the resource the protected-resource
	// metadata names. Required.
	PublicURL *url.URL
	// AuthorizationServers, when the cluster's tokens come from an OAuth
	// or OIDC issuer, are listed in the metadata so clients find it.
	AuthorizationServers []string

	Sandboxes Sandboxes
	Access    Access
	// DataPlane is the router: runtime calls are served by it in process.
	DataPlane http.Handler
	// Cluster: nil refuses the tools that write to the cluster.
	Cluster Cluster
	// Previews: nil refuses preview_url.
	Previews Previews

	Limits  Limits
	Metrics *Metrics
	Log     *slog.Logger
}

// Handler serves the endpoint: /mcp and the protected-resource metadata.
type Handler struct {
	opts       Options
	limits     Limits
	data       dataPlane
	streamable http.Handler
	metadata   http.Handler
	tools      []tool
	inflight   chan struct{} // a slot per tool call running, of everyone
	log        *slog.Logger
	metrics    *Metrics

	mu      sync.Mutex
	callers map[string]*callerServer // by identity key
}

// New builds the endpoint; Run keeps its resources current.
func New(opts Options) (*Handler, error) {
	switch {
	case opts.PublicURL == nil || opts.PublicURL.Host == "":
		return nil, errors.New("mcp: PublicURL is required")
	case opts.Sandboxes == nil || opts.Access == nil || opts.DataPlane == nil:
		return nil, errors.New("mcp: Sandboxes, Access and DataPlane are required")
	case opts.Metrics == nil:
		return nil, errors.New("mcp: Metrics is required")
	}
	h := &Handler{
		opts:    opts,
		limits:  opts.Limits.withDefaults(),
		log:     cmp.Or(opts.Log, slog.New(slog.DiscardHandler)),
		metrics: opts.Metrics,
		callers: make(map[string]*callerServer),
	}
	h.data = dataPlane{router: opts.DataPlane, log: h.log}
	h.inflight = make(chan struct{}, h.limits.TotalCalls)
	h.tools = h.toolTable()
	h.metadata = h.metadataHandler()
	h.streamable = h.authenticated(sdk.NewStreamableHTTPHandler(h.serverFor, &sdk.StreamableHTTPOptions{
		SessionTimeout: h.limits.SessionIdle,
		// The router is the DNS-rebinding guard: it serves this only on
		// its own MCP host, and only to authenticated callers.
		DisableLocalhostProtection: true,
		MaxRequestBodyBytes:        h.limits.RequestBytes,
		Logger:                     h.log,
	}))
	return h, nil
}

// ServeHTTP serves a request for the endpoint's host.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case Path:
		h.streamable.ServeHTTP(w, r)
	case metadataPath, metadataPath + Path:
		h.metadata.ServeHTTP(w, r)
	default:
		writeError(w, http.StatusNotFound, "not_found", "the MCP endpoint is "+Path)
	}
}

// Run keeps every caller's resources current from the resolver's feed
// and drops callers without sessions, until ctx ends.
func (h *Handler) Run(ctx context.Context) error {
	feed := h.opts.Sandboxes.Subscribe()
	defer feed.Close()
	go h.sweep(ctx)
	for {
		keys, err := feed.Next(ctx)
		if err != nil {
			return nil // ctx ended
		}
		for _, cs := range h.callerServers() {
			cs.resources.changed(keys)
		}
	}
}

// sweep drops the servers of callers without a session, and refreshes
// the resources of the others (a RoleBinding may have changed).
func (h *Handler) sweep(ctx context.Context) {
	t := time.NewTicker(h.limits.RefreshEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, cs := range h.callerServers() {
			// Under the lock that callerServerFor touches a server under:
			// a server just handed to a request is not idle.
			h.mu.Lock()
			idle := cs.sessions() == 0 && time.Since(cs.lastUsed()) > h.limits.SessionIdle
			if idle {
				delete(h.callers, cs.key)
			}
			h.mu.Unlock()
			if idle {
				continue
			}
			cs.resources.refresh(ctx)
		}
	}
}

func (h *Handler) callerServers() []*callerServer {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*callerServer, 0, len(h.callers))
	for _, cs := range h.callers {
		out = append(out, cs)
	}
	return out
}

// serverFor is the go-sdk's getServer: the MCP server of the caller the
// request was authenticated as.
func (h *Handler) serverFor(r *http.Request) *sdk.Server {
	c := callerFrom(r.Context())
	if c == nil {
		return nil
	}
	return c.server.server
}
