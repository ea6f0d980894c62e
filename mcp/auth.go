package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/time/rate"

	"github.com/sandbox-router/sandbox-router/access"
)

// metadataPath is where the OAuth protected-resource metadata (RFC 9728)
// is served: at the well-known path, and at it followed by Path, as MCP
// clients look for both.
const metadataPath = "/.well-known/oauth-protected-resource"

// caller is one authenticated MCP request: who, with which credential,
// from where. Tools read it from their request's TokenInfo.
type caller struct {
	principal access.Principal
	// token is the caller's bearer token: sent to the API server for the
	// caller's own writes (a Kubernetes token), and as the credential of
	// the caller's runtime calls through the router. Never logged, never
	// passed to a sandbox (the router strips it).
	token  string
	client netip.Addr
	// request is the HTTP request the call came in: its host and TLS
	// say where preview links point.
	request *http.Request
	server  *callerServer
}

type callerKey struct{}

func callerFrom(ctx context.Context) *caller {
	c, _ := ctx.Value(callerKey{}).(*caller)
	return c
}

// callerOf is the caller of a tool call, from the TokenInfo of the HTTP
// request that carried it.
func callerOf(extra *sdk.RequestExtra) *caller {
	if extra == nil || extra.TokenInfo == nil {
		return nil
	}
	c, _ := extra.TokenInfo.Extra["caller"].(*caller)
	return c
}

// authenticated authenticates a request to /mcp, answers a refusal with
// the router's error contract and the challenge MCP clients follow to the
// metadata, bounds the sessions of a caller, and hands the rest to next
// with the caller in its context and in the TokenInfo that binds an MCP
// session to its identity (another identity presenting the session's id
// is refused).
func (h *Handler) authenticated(next http.Handler) http.Handler {
	verify := func(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
		c := callerFrom(ctx)
		if c == nil {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{UserID: c.server.key, Extra: map[string]any{"caller": c}}, nil
	}
	bound := auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r.Header)
		if !ok {
			h.refuse(w, &access.Error{Status: http.StatusUnauthorized, Code: access.CodeMissingCredentials,
				Detail: "a bearer token is required: a Kubernetes token, or a scoped token of the router"})
			return
		}
		var client netip.Addr
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			client = ap.Addr().Unmap()
		}
		p, err := h.opts.Access.Authenticate(r.Context(), token, client)
		if err != nil {
			var ae *access.Error
			if !errors.As(err, &ae) {
				if r.Context().Err() == nil {
					writeError(w, http.StatusServiceUnavailable, access.CodeUnavailable, "the caller could not be authenticated now")
				}
				return // else the client left
			}
			h.refuse(w, ae)
			return
		}
		cs, err := h.callerServerFor(p)
		if err != nil {
			h.refuse(w, err.(*access.Error))
			return
		}
		// The cheap early answer; initializeLimit holds the bound exactly
		// when requests race. Sessions never initialized (a discovery
		// probe's, a client's that failed) count too, under a looser
		// bound: each holds memory until it times out.
		if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "" &&
			(cs.sessions() >= h.limits.SessionsPerCaller || cs.openSessions() >= 4*h.limits.SessionsPerCaller) {
			h.refuse(w, &access.Error{Status: http.StatusTooManyRequests, Code: "too_many_sessions", RetryAfter: 10,
				Detail: tooManySessions(h.limits.SessionsPerCaller)})
			return
		}
		c := &caller{principal: p, token: token, client: client, request: r, server: cs}
		bound.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// refuse answers with the error contract; a 401 carries the challenge
// that points MCP clients to the metadata.
func (h *Handler) refuse(w http.ResponseWriter, e *access.Error) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer resource_metadata=%q", h.metadataURL()))
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeError(w, e.Status, e.Code, e.Detail)
}

func (h *Handler) resourceURL() string {
	u := *h.opts.PublicURL
	u.Path, u.RawQuery, u.Fragment = Path, "", ""
	return u.String()
}

func (h *Handler) metadataURL() string {
	u := *h.opts.PublicURL
	u.Path, u.RawQuery, u.Fragment = metadataPath+Path, "", ""
	return u.String()
}

// metadataHandler serves the protected-resource metadata: the resource,
// that the token goes in the Authorization header, and the issuers when
// configured. Kubernetes itself has no OAuth authorization server: a
// client is configured with its token (docs/mcp.md).
func (h *Handler) metadataHandler() http.Handler {
	return auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
		Resource:               h.resourceURL(),
		AuthorizationServers:   h.opts.AuthorizationServers,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "sandbox-router MCP endpoint",
		ResourceDocumentation:  "https://github.com/sandbox-router/sandbox-router/blob/main/docs/mcp.md",
	})
}

// bearer reads an Authorization: Bearer credential.
func bearer(hd http.Header) (string, bool) {
	vs := hd["Authorization"]
	if len(vs) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(vs[0], " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

func writeError(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Detail string `json:"detail"`
		Code   string `json:"code"`
	}{detail, code})
}

// callerServer is one identity's MCP server: its tools (the same for
// everyone), its resources (its own sandboxes), and its limits.
type callerServer struct {
	key       string
	server    *sdk.Server
	resources *resources
	calls     *rate.Limiter
	inflight  chan struct{} // a slot per tool call running
	used      atomic.Int64  // unix nanoseconds of the last request

	mu      sync.Mutex
	opening int // requests that may open a session, being answered
}

// openSessions counts every session, initialized or not.
func (cs *callerServer) openSessions() (n int) {
	for range cs.server.Sessions() {
		n++
	}
	return n
}

func tooManySessions(most int) string {
	return fmt.Sprintf("this identity has %d MCP sessions open, the most it may: close one (DELETE %s with its Mcp-Session-Id)", most, Path)
}

// initializeLimit bounds the identity's sessions where a session becomes
// one: its initialize request, whose place is held while it is handled,
// so that racing requests cannot all pass the count.
func (cs *callerServer) initializeLimit(most int) sdk.Middleware {
	return func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			if method != "initialize" {
				return next(ctx, method, req)
			}
			release, ok := cs.reserve(most)
			if !ok {
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: tooManySessions(most)}
			}
			defer release()
			return next(ctx, method, req)
		}
	}
}

// reserve holds a place for a session being initialized, if the identity
// has one left; release gives it back once it is (it then counts
// itself).
func (cs *callerServer) reserve(most int) (release func(), ok bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.sessions()+cs.opening >= most {
		return nil, false
	}
	cs.opening++
	return func() {
		cs.mu.Lock()
		cs.opening--
		cs.mu.Unlock()
	}, true
}

func (cs *callerServer) touch()              { cs.used.Store(time.Now().UnixNano()) }
func (cs *callerServer) lastUsed() time.Time { return time.Unix(0, cs.used.Load()) }

// sessions counts the initialized sessions: a client's discovery probe
// (server/discover, before initialize) opens one that closes right
// after, and must not take the place of the session that follows.
func (cs *callerServer) sessions() (n int) {
	for s := range cs.server.Sessions() {
		if s.InitializeParams() != nil {
			n++
		}
	}
	return n
}

// identityKey names an identity: its server, limits and sessions are
// shared by all its tokens. A scoped token is its own identity (two may
// reach different sandboxes).
func identityKey(p access.Principal) string { return p.Key() }

var errTooManyCallers = &access.Error{Status: http.StatusServiceUnavailable, Code: "too_many_callers", RetryAfter: 30,
	Detail: "the MCP endpoint serves as many identities as it may; try again later"}

// callerServerFor is p's server, made on its first request.
func (h *Handler) callerServerFor(p access.Principal) (*callerServer, error) {
	key := identityKey(p)
	h.mu.Lock()
	defer h.mu.Unlock()
	if cs, ok := h.callers[key]; ok {
		cs.touch()
		return cs, nil
	}
	if len(h.callers) >= h.limits.Callers {
		return nil, errTooManyCallers
	}
	cs := &callerServer{
		key:      key,
		calls:    rate.NewLimiter(rate.Limit(h.limits.CallsPerSecond), h.limits.CallBurst),
		inflight: make(chan struct{}, h.limits.ConcurrentCalls),
	}
	cs.touch()
	cs.resources = newResources(h, p)
	cs.server = sdk.NewServer(&sdk.Implementation{Name: "sandbox-router", Title: "Agent sandboxes", Version: "1"}, &sdk.ServerOptions{
		Instructions:       instructions,
		SubscribeHandler:   cs.resources.subscribe,
		UnsubscribeHandler: func(context.Context, *sdk.UnsubscribeRequest) error { return nil },
		HasResources:       true,
		HasTools:           true,
	})
	cs.server.AddReceivingMiddleware(cs.initializeLimit(h.limits.SessionsPerCaller))
	for _, t := range h.tools {
		cs.server.AddTool(t.def, h.limited(t))
	}
	cs.resources.attach(cs.server)
	h.callers[key] = cs
	return cs, nil
}

// instructions tell the model what the server is for.
const instructions = `Agent sandboxes of a Kubernetes cluster, reached through sandbox-router. ` +
	`Every tool acts as you: you see only the sandboxes your identity may reach. ` +
	`list_sandboxes first; a suspended sandbox is woken by any runtime tool (execute_command, read_file, ...), which then waits for it.`
