package access

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
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
	// MaxTTL caps what a request may ask for (1h).
	DefaultTTL, MaxTTL time.Duration
	// Links build the entry links of the answer: BaseDomain for host
	// routing, PathPrefix for path routing, EntryParam the query
	// parameter (DefaultEntryParam). The scheme is the one the caller
	// reached the router with (X-Forwarded-Proto as for sessions).
	BaseDomain, PathPrefix, EntryParam string
}

// Minter serves the minting endpoint.
type Minter struct {
	c    *Checker
	opts MintOptions
	now  func() time.Time
}

// The bounds of a request: its body, and what it may ask a token to
// carry (so that every token minted fits in a session cookie).
const (
	maxMintRequest = 16 << 10
	maxMintList    = 16
	maxMintPath    = 512
	// minMintTTL: a token's expiry is in whole seconds, and one must
	// outlive the answer that carries it.
	minMintTTL = 10 * time.Second
)

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
	if opts.DefaultTTL <= 0 {
		opts.DefaultTTL = 15 * time.Minute
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = time.Hour
	}
	opts.DefaultTTL = min(opts.DefaultTTL, opts.MaxTTL)
	if opts.EntryParam == "" {
		opts.EntryParam = DefaultEntryParam
	}
	return &Minter{c: c, opts: opts, now: time.Now}, nil
}

// MintRequest is the endpoint's request body.
type MintRequest struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// TTL is a Go duration ("15m"); empty: the default.
	TTL string `json:"ttl,omitempty"`
	// The optional limits of the token (see scoped.Claims).
	Ports       []uint16 `json:"ports,omitempty"`
	Methods     []string `json:"methods,omitempty"`
	PathPrefix  string   `json:"pathPrefix,omitempty"`
	ClientCIDRs []string `json:"clientCIDRs,omitempty"`
}

// MintResponse is its answer.
type MintResponse struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	// Links are entry links to the sandbox's first allowed port (8888
	// when the token allows any): opened in a browser, each starts a
	// session.
	Links []string `json:"links,omitempty"`
}

var errMintMethod = &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Detail: "POST a JSON body to mint a token",
	Headers: http.Header{"Allow": {"POST"}}}

// ServeHTTP mints a token: 201 with a MintResponse, or the error contract
// ({"code", "detail"}) with 400, 401, 403, 404, 405, 429 or 503.
func (m *Minter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store") // the answer is a credential
	resp, err := m.mint(r)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Status: http.StatusBadRequest, Code: "invalid_request", Detail: err.Error()}
		}
		writeMintError(w, e)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(resp)
}

func (m *Minter) mint(r *http.Request) (*MintResponse, error) {
	if r.Method != http.MethodPost {
		return nil, errMintMethod
	}
	c := m.c
	var client netip.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap.Addr().Unmap()
	}
	if c.limiter != nil {
		if e := c.limiter.blocked(client); e != nil {
			return nil, e
		}
	}
	req, claims, err := m.parse(r)
	if err != nil {
		return nil, err
	}
	sandbox := resolver.Key{Namespace: req.Namespace, Name: req.Name}
	// Who asks, and may they reach the sandbox: a Kubernetes token or a
	// client certificate, never a scoped token (a token cannot beget a
	// longer or wider one).
	var id Identity
	if token, present := bearerToken(r.Header); present {
		if token == "" || scoped.IsScoped(token) {
			err = errInvalidCredentials
		} else {
			id, err = c.authenticate(r.Context(), token)
		}
	} else if cert := verifiedClientCert(r); cert != nil {
		var ok bool
		if id, ok = certificateIdentity(cert); !ok {
			err = errInvalidCredentials
		}
	} else {
		err = errMissingCredentials
	}
	if err == errInvalidCredentials && c.limiter != nil {
		c.limiter.failed(client)
	}
	if err == nil {
		err = c.authorize(r.Context(), id, sandbox)
	}
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
	res := c.sandboxes.Lookup(sandbox)
	if res.UID == "" {
		return nil, &Error{Status: http.StatusNotFound, Code: "sandbox_not_found", Detail: "no such sandbox"}
	}
	claims.KeyID, claims.UID, claims.Subject = m.opts.KeyID, res.UID, id.User
	tok, err := scoped.MintV2(m.opts.Key, claims, m.now())
	if err != nil {
		return nil, err
	}
	port := uint16(8888)
	if len(claims.Ports) > 0 {
		port = claims.Ports[0]
	}
	return &MintResponse{Token: tok, Expires: claims.Expires.UTC(), Links: m.links(r, req, port, tok)}, nil
}

// parse reads and checks the request body.
func (m *Minter) parse(r *http.Request) (MintRequest, scoped.Claims, error) {
	var req MintRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxMintRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, scoped.Claims{}, fmt.Errorf("the body is not a token request: %v", err)
	}
	if !resolver.IsDNSLabel(req.Namespace) || !resolver.IsDNSLabel(req.Name) {
		return req, scoped.Claims{}, errors.New("namespace and name must be DNS-1123 labels")
	}
	ttl := m.opts.DefaultTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < minMintTTL {
			return req, scoped.Claims{}, fmt.Errorf("ttl %q is not a duration of at least %s", req.TTL, minMintTTL)
		}
		if d > m.opts.MaxTTL {
			return req, scoped.Claims{}, fmt.Errorf("ttl %s is longer than the router allows (%s)", d, m.opts.MaxTTL)
		}
		ttl = d
	}
	if len(req.Ports) > maxMintList || len(req.Methods) > maxMintList || len(req.ClientCIDRs) > maxMintList || len(req.PathPrefix) > maxMintPath {
		return req, scoped.Claims{}, fmt.Errorf("at most %d ports, methods and clientCIDRs, and a pathPrefix of %d bytes: a token must fit in a cookie", maxMintList, maxMintPath)
	}
	claims := scoped.Claims{Namespace: req.Namespace, Name: req.Name, Expires: m.now().Add(ttl), Ports: req.Ports, PathPrefix: req.PathPrefix}
	if slices.Contains(req.Ports, 0) {
		return req, claims, errors.New("ports must be 1-65535")
	}
	for _, meth := range req.Methods {
		if meth == "" || strings.ToUpper(meth) != meth || strings.ContainsAny(meth, " \t/") {
			return req, claims, fmt.Errorf("method %q is not an HTTP method in upper case", meth)
		}
		claims.Methods = append(claims.Methods, meth)
	}
	if req.PathPrefix != "" && !strings.HasPrefix(req.PathPrefix, "/") {
		return req, claims, errors.New("pathPrefix must start with /")
	}
	for _, s := range req.ClientCIDRs {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return req, claims, fmt.Errorf("clientCIDRs: %v", err)
		}
		claims.ClientCIDRs = append(claims.ClientCIDRs, pfx)
	}
	return req, claims, nil
}

// links builds the entry links, keeping the port the caller reached the
// router on.
func (m *Minter) links(r *http.Request, req MintRequest, port uint16, token string) []string {
	o := &m.opts
	scheme := "http"
	if m.c.https(r) {
		scheme = "https"
	}
	_, routerPort, _ := strings.Cut(r.Host, ":")
	if strings.HasPrefix(r.Host, "[") {
		if i := strings.LastIndex(r.Host, "]:"); i >= 0 {
			routerPort = r.Host[i+2:]
		} else {
			routerPort = ""
		}
	}
	query := "/?" + url.QueryEscape(o.EntryParam) + "=" + url.QueryEscape(token)
	var links []string
	if o.BaseDomain != "" {
		host := strconv.Itoa(int(port)) + "-" + req.Name + "." + req.Namespace + "." + o.BaseDomain
		if routerPort != "" {
			host += ":" + routerPort
		}
		links = append(links, scheme+"://"+host+query)
	}
	if o.PathPrefix != "" {
		links = append(links, scheme+"://"+r.Host+o.PathPrefix+"/"+req.Namespace+"/"+req.Name+"/"+strconv.Itoa(int(port))+query)
	}
	return links
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
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Detail string `json:"detail"`
		Code   string `json:"code"`
	}{e.Detail, e.Code})
}
