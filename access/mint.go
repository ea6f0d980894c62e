package access

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/sandbox-router/sandbox-router/access/scoped"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// The minting endpoint lets an agent platform hand preview links to its
// users without holding signing keys itself: a caller whom Kubernetes
// allows to reach a sandbox (the same SubjectAccessReview as a request to
// it) asks the router for a short-lived v2 scoped token for that sandbox,
// bound to its UID and optionally narrowed further, and gets it with the
// entry links that open a browser session. A token never grants more than
// its minter had when minting it, and at most for MaxTTL: a RoleBinding
// removed later does not revoke tokens already minted, which is why their
// life is short.

// MintPath is where the router serves the endpoint, on its own host (a
// request that names no sandbox).
const MintPath = "/sandbox-router/v1/tokens"

// MintOptions configure NewMinter.
type MintOptions struct {
	// Key signs the tokens; KeyID names it (its public half must be among
	// the router fleet's scoped-token keys).
	Key   ed25519.PrivateKey
	KeyID string
	// DefaultTTL is a token's life when the request names none (15m);
	// MaxTTL caps what a request may ask for (1h). Neither may be under
	// MinMintTTL.
	DefaultTTL, MaxTTL time.Duration
	// The entry links of the answer, when browser sessions are on:
	// PublicURL (scheme://host[:port]) is where users reach the router;
	// nil: the scheme and host the caller used. BaseDomain builds host
	// routing links, PathPrefix path routing ones, EntryParam is the query
	// parameter (DefaultEntryParam).
	PublicURL                          *url.URL
	BaseDomain, PathPrefix, EntryParam string
}

// MinMintTTL is the shortest life a minted token may have: its expiry is
// in whole seconds, and it must outlive the answer that carries it.
const MinMintTTL = 10 * time.Second

// Minter serves the minting endpoint.
type Minter struct {
	c    *Checker
	opts MintOptions
	now  func() time.Time
}

// NewMinter needs a Checker in the kubernetes mode (the minter's identity
// is reviewed and its access to the sandbox authorized by the API server)
// with Sandboxes (for the UID a token is bound to).
func NewMinter(c *Checker, opts MintOptions) (*Minter, error) {
	if c.tokens == nil || c.access == nil || c.sandboxes == nil {
		return nil, errors.New("access: minting needs the kubernetes mode, with scoped tokens")
	}
	if len(opts.Key) != ed25519.PrivateKeySize || opts.KeyID == "" {
		return nil, errors.New("access: minting needs an Ed25519 key and its id")
	}
	if opts.DefaultTTL == 0 {
		opts.DefaultTTL = 15 * time.Minute
	}
	if opts.MaxTTL == 0 {
		opts.MaxTTL = time.Hour
	}
	if opts.DefaultTTL < MinMintTTL || opts.MaxTTL < opts.DefaultTTL {
		return nil, errors.New("access: minting needs MinMintTTL <= DefaultTTL <= MaxTTL")
	}
	if opts.EntryParam == "" {
		opts.EntryParam = DefaultEntryParam
	}
	return &Minter{c: c, opts: opts, now: time.Now}, nil
}

// MintResponse is the endpoint's answer.
type MintResponse struct {
	Token string `json:"token"`
	// Expires is when the token stops working (whole seconds).
	Expires time.Time `json:"expires"`
	// Links are entry links to the sandbox's first allowed port (8888
	// when the token allows any), at the token's path prefix: opened in a
	// browser, each starts a session. None when sessions are off or the
	// token does not allow GET.
	Links []string `json:"links,omitempty"`
}

// The endpoint's own refusals, beside the access ones.
var (
	errMintMethod = &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Detail: "POST a JSON body to mint a token",
		Headers: http.Header{"Allow": {"POST"}}}
	errMintMediaType = &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
		Detail: "the body must be Content-Type: application/json"}
	errMintNotReady = &Error{Status: http.StatusServiceUnavailable, Code: "router_not_ready", Detail: "the router has not loaded the cluster's sandboxes yet",
		RetryAfter: 1}
	errMintNotFound = &Error{Status: http.StatusNotFound, Code: "sandbox_not_found", Detail: "no such sandbox"}
)

// mintBodyTimeout bounds reading the body, which happens only after the
// caller is authenticated.
const mintBodyTimeout = 10 * time.Second

// ServeHTTP mints a token: 201 with a MintResponse, or the error contract
// ({"code", "detail"}) with 400, 401, 403, 404, 405, 415, 429 or 503.
func (m *Minter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store") // the answer is a credential
	h.Set("X-Content-Type-Options", "nosniff")
	resp, err := m.mint(w, r)
	if err != nil {
		var e *Error
		switch {
		case errors.As(err, &e):
		case r.Context().Err() != nil:
			e = &Error{Status: 499, Code: "client_closed", Detail: "the client left"} // for the log: nobody reads it
		default:
			m.c.log.Error("minting failed", "err", err)
			e = &Error{Status: http.StatusInternalServerError, Code: "internal_error", Detail: "minting failed"}
		}
		writeMintError(w, e)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(resp)
}

// mint runs the request through the same steps as a request to the
// sandbox: the limits, who asks (never a scoped token: a token cannot
// beget a longer or wider one), may they reach it, does it exist; then
// signs.
func (m *Minter) mint(w http.ResponseWriter, r *http.Request) (*MintResponse, error) {
	c := m.c
	if r.Method != http.MethodPost {
		return nil, errMintMethod
	}
	// A JSON body cannot come from a plain HTML form: a browser must ask
	// (CORS preflight) before sending it cross-origin, which nobody
	// answers here, so a page elsewhere cannot mint with the browser's
	// client certificate.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, errMintMediaType
	}
	var client netip.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap.Addr().Unmap()
	}
	if c.limiter != nil {
		if e := c.limiter.blocked(client); e != nil {
			return nil, e
		}
	}
	id, err := m.caller(r.Context(), r)
	if err == errInvalidCredentials && c.limiter != nil {
		c.limiter.failed(client)
	}
	if err != nil {
		c.metrics.decided(err)
		return nil, err
	}
	// The body only from a caller the API server knows, and not for ever.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(mintBodyTimeout))
	req, claims, err := m.parse(r.Body)
	if err != nil {
		return nil, err
	}
	return m.issue(r.Context(), id, client, req, claims, r)
}

// Preview mints a token for p, an MCP caller (the preview_url tool), as
// the endpoint would for the same request: p must be a Kubernetes
// identity (a token cannot beget another), allowed to reach the sandbox.
// r is the request p came with: where its entry links point when
// PublicURL is not set.
func (m *Minter) Preview(ctx context.Context, p Principal, req MintRequest, client netip.Addr, r *http.Request) (*MintResponse, error) {
	if p.Auth != AuthKubernetesToken {
		return nil, &Error{Status: http.StatusForbidden, Code: "token_cannot_mint",
			Detail: "a preview link is minted only for a Kubernetes identity, never from another scoped token"}
	}
	claims, err := m.claimsFor(req)
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Detail: err.Error()}
	}
	return m.issue(ctx, mintCaller{p.id, p.Auth}, client, req, claims, r)
}

// issue mints the token of a checked request for id: may they reach the
// sandbox, within the limits, does it exist; then it signs.
func (m *Minter) issue(ctx context.Context, id mintCaller, client netip.Addr, req MintRequest, claims scoped.Claims, r *http.Request) (*MintResponse, error) {
	c := m.c
	sandbox := resolver.Key{Namespace: req.Namespace, Name: req.Name}
	err := c.authorize(ctx, id.Identity, sandbox)
	c.metrics.decided(err)
	if err != nil {
		return nil, err
	}
	if c.limiter != nil {
		// A mint counts as a request of its caller to the sandbox.
		release, e := c.limiter.admit(id.User, client, sandbox)
		if e != nil {
			return nil, e
		}
		release()
	}
	// Only now, to a caller allowed to reach it, does the router say
	// whether the sandbox exists.
	if s, ok := c.sandboxes.(interface{ Synced() bool }); ok && !s.Synced() {
		return nil, errMintNotReady
	}
	res := c.sandboxes.Lookup(sandbox)
	if res.UID == "" {
		return nil, errMintNotFound
	}
	now := m.now()
	claims.KeyID, claims.UID, claims.Subject = m.opts.KeyID, res.UID, id.User
	claims.Expires = time.Unix(claims.Expires.Unix(), 0) // as the token says it
	tok, err := scoped.MintV2(m.opts.Key, claims, now)
	if err != nil {
		return nil, err
	}
	if !cookieSafe(tok) {
		// parse bounds every claim so that this does not happen.
		return nil, errors.New("the minted token is too large for a cookie")
	}
	c.log.Info("scoped token minted", "subject", id.User, "auth", id.auth, "namespace", sandbox.Namespace, "name", sandbox.Name,
		"uid", res.UID, "kid", m.opts.KeyID, "expires", claims.Expires.UTC(), "ports", claims.Ports, "methods", claims.Methods,
		"path", claims.PathPrefix, "client_cidrs", req.ClientCIDRs, "client", client.String())
	return &MintResponse{Token: tok, Expires: claims.Expires.UTC(), Links: m.links(r, sandbox, claims, tok)}, nil
}

// caller authenticates the minter: a Kubernetes token (TokenReview) or a
// verified client certificate.
func (m *Minter) caller(ctx context.Context, r *http.Request) (mintCaller, error) {
	if token, present := bearerToken(r.Header); present {
		if token == "" || scoped.IsScoped(token) {
			return mintCaller{}, errInvalidCredentials
		}
		id, err := m.c.authenticate(ctx, token)
		return mintCaller{id, AuthKubernetesToken}, err
	}
	if cert := verifiedClientCert(r); cert != nil {
		id, ok := certificateIdentity(cert)
		if !ok {
			return mintCaller{}, errInvalidCredentials
		}
		return mintCaller{id, AuthClientCertificate}, nil
	}
	return mintCaller{}, errMissingCredentials
}

// mintCaller is who asks for a token, and how the router knows.
type mintCaller struct {
	Identity
	auth string
}

func writeMintError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	for k, vv := range e.Headers {
		h[k] = vv
	}
	if e.Challenge != "" {
		h.Set("WWW-Authenticate", e.Challenge)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Detail string `json:"detail"`
		Code   string `json:"code"`
	}{e.Detail, e.Code})
}
