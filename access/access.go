package access

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sandbox-router/sandbox-router/access/scoped"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// Mode is how requests are admitted.
type Mode string

const (
	// ModeAllowAll admits every request: anyone who can reach the router
	// reaches every sandbox. The default, as upstream's; for clusters
	// where something in front of the router decides.
	ModeAllowAll Mode = "allow-all"
	// ModeTokenReview admits any caller whose bearer token the API server
	// authenticates (TokenReview), whatever the sandbox: upstream's
	// "tokenreview".
	ModeTokenReview Mode = "tokenreview"
	// ModeKubernetes authenticates the token (TokenReview) and then asks
	// the API server whether that identity may reach this sandbox: a
	// SubjectAccessReview of verb "create" on sandboxes/proxy (group
	// agents.x-k8s.io) in the sandbox's namespace with its name, the
	// convention of pods/proxy. Teams grant access with ordinary RBAC,
	// resourceNames included.
	ModeKubernetes Mode = "kubernetes"
	// ModeScopedToken admits a scoped token (access/scoped) that permits
	// the request: signed for this sandbox (v1: namespace and name, as
	// upstream's "scoped-token"; v2: also its UID, and the token's limits
	// of ports, methods, path and client addresses), verified without the
	// API server.
	ModeScopedToken Mode = "scoped-token"
)

// ParseModes reads a comma-separated list of modes: allow-all alone, or
// any of tokenreview, kubernetes and scoped-token together (a scoped
// token is verified as such, any other bearer token by the API server).
func ParseModes(s string) ([]Mode, error) {
	var modes []Mode
	for part := range strings.SplitSeq(s, ",") {
		m := Mode(strings.TrimSpace(part))
		switch m {
		case ModeAllowAll, ModeTokenReview, ModeKubernetes, ModeScopedToken:
		default:
			return nil, fmt.Errorf("%q is not allow-all, tokenreview, kubernetes or scoped-token", m)
		}
		if slices.Contains(modes, m) {
			return nil, fmt.Errorf("%s given twice", m)
		}
		modes = append(modes, m)
	}
	switch {
	case len(modes) > 1 && slices.Contains(modes, ModeAllowAll):
		return nil, errors.New("allow-all cannot be combined with another mode")
	case slices.Contains(modes, ModeTokenReview) && slices.Contains(modes, ModeKubernetes):
		return nil, errors.New("tokenreview and kubernetes both review tokens: choose one")
	}
	return modes, nil
}

// Identity is who is calling, as the API server authenticated them.
type Identity struct {
	User   string
	UID    string
	Groups []string
	Extra  map[string][]string

	// digest sums all of the above: computed once, when the identity is
	// learnt, and part of every decision's key.
	digest digest
}

// TokenAuthenticator tells who a bearer token belongs to. ok is false for
// a token the authority refuses (a definite answer); err is set when it
// could not answer (unreachable, overloaded).
type TokenAuthenticator interface {
	AuthenticateToken(ctx context.Context, token string) (id Identity, ok bool, err error)
}

// SandboxAuthorizer tells whether an identity may reach a sandbox; err is
// set when it could not answer.
type SandboxAuthorizer interface {
	MayReach(ctx context.Context, id Identity, sandbox resolver.Key) (allowed bool, err error)
}

// ScopedVerifier verifies scoped tokens (access/scoped.Verifier).
type ScopedVerifier interface {
	Verify(token string) (scoped.Claims, error)
}

// Sandboxes looks sandboxes up, for the UID a v2 scoped token is bound to
// (the router's resolver).
type Sandboxes interface {
	Lookup(key resolver.Key) resolver.Result
}

// Options configure a Checker. Zero durations and sizes take the defaults.
type Options struct {
	// Modes are allow-all alone (the default) or a combination (see
	// ParseModes).
	Modes []Mode
	// Tokens is required by tokenreview and kubernetes, Access by
	// kubernetes, Scoped and Sandboxes by scoped-token.
	Tokens    TokenAuthenticator
	Access    SandboxAuthorizer
	Scoped    ScopedVerifier
	Sandboxes Sandboxes
	// Views answers list and get questions (Checker.MayView) in
	// kubernetes mode; nil takes Access when it implements ViewAuthorizer
	// too (access/kube's AccessReviewer does). Without one every view
	// question is refused.
	Views ViewAuthorizer

	// TokenTTL is how long an authenticated token is trusted without
	// asking again (default 2m); TokenNegativeTTL how long a refused one
	// stays refused (default 10s); TokenCacheSize bounds the tokens
	// remembered (default 10000).
	TokenTTL         time.Duration
	TokenNegativeTTL time.Duration
	TokenCacheSize   int
	// DecisionTTL is how long a sandbox decision is kept (default 30s):
	// the longest a removed RoleBinding keeps working. DecisionNegativeTTL
	// for a refusal (default 5s), DecisionCacheSize bounds them (default
	// 100000).
	DecisionTTL         time.Duration
	DecisionNegativeTTL time.Duration
	DecisionCacheSize   int
	// ViewCacheSize bounds the view answers remembered (default 10000);
	// they live as long as decisions (DecisionTTL, DecisionNegativeTTL).
	ViewCacheSize int
	// StaleFor is how long past its time to live an answer keeps serving
	// while the API server cannot be reached (default 10m). Requests with
	// no answer at all then get 503, never 401 or 403.
	StaleFor time.Duration
	// CallTimeout bounds one API call (default 10s).
	CallTimeout time.Duration
	// Limits bound callers, client addresses and sandboxes (any mode,
	// allow-all included); zero: none.
	Limits Limits
	// Sessions let browsers carry a credential in a cookie (any mode but
	// allow-all); zero: none.
	Sessions Sessions

	Metrics *Metrics
	Log     *slog.Logger
}

// The defaults of Options.
const (
	DefaultTokenTTL            = 2 * time.Minute
	DefaultTokenNegativeTTL    = 10 * time.Second
	DefaultTokenCacheSize      = 10000
	DefaultDecisionTTL         = 30 * time.Second
	DefaultDecisionNegativeTTL = 5 * time.Second
	DefaultDecisionCacheSize   = 100000
	DefaultViewCacheSize       = 10000
	DefaultStaleFor            = 10 * time.Minute
	DefaultCallTimeout         = 10 * time.Second
)

// Checker admits or refuses requests. It is safe for concurrent use.
type Checker struct {
	modes []Mode
	// What a bearer token is checked with: reviewed by the API server
	// (tokens), then per sandbox by RBAC (access); or, for a scoped
	// token's form, verified here (scoped).
	tokens    TokenAuthenticator
	access    SandboxAuthorizer
	views     ViewAuthorizer // kubernetes mode: list and get questions
	scoped    ScopedVerifier
	sandboxes Sandboxes
	tokenMemo *memo[Identity]
	decisions *memo[struct{}]
	viewMemo  *memo[struct{}]
	limiter   *limiter // nil: no limits
	sessions  Sessions
	metrics   *Metrics
	log       *slog.Logger
}

// New builds a Checker.
func New(opts Options) (*Checker, error) {
	if opts.Metrics == nil {
		return nil, errors.New("access: Metrics is required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if len(opts.Modes) == 0 {
		opts.Modes = []Mode{ModeAllowAll}
	}
	c := &Checker{modes: slices.Clone(opts.Modes), sessions: opts.Sessions, metrics: opts.Metrics, log: opts.Log}
	c.sessions.EntryParam = cmp.Or(c.sessions.EntryParam, DefaultEntryParam)
	for _, m := range opts.Modes {
		switch m {
		case ModeAllowAll:
		case ModeTokenReview, ModeKubernetes:
			if opts.Tokens == nil || m == ModeKubernetes && opts.Access == nil {
				return nil, fmt.Errorf("access: mode %s needs a TokenAuthenticator (and kubernetes a SandboxAuthorizer)", m)
			}
			c.tokens = opts.Tokens
			if m == ModeKubernetes {
				c.access = opts.Access
				c.views = opts.Views
				if c.views == nil {
					c.views, _ = opts.Access.(ViewAuthorizer)
				}
				if c.views == nil {
					c.log.Warn("access: no ViewAuthorizer: every list and get question (the dashboard's) is refused")
				}
			}
		case ModeScopedToken:
			if opts.Scoped == nil || opts.Sandboxes == nil {
				return nil, errors.New("access: mode scoped-token needs a ScopedVerifier and Sandboxes")
			}
			c.scoped, c.sandboxes = opts.Scoped, opts.Sandboxes
		default:
			return nil, fmt.Errorf("access: unknown mode %q", m)
		}
	}
	timeout := cmp.Or(opts.CallTimeout, DefaultCallTimeout)
	stale := cmp.Or(opts.StaleFor, DefaultStaleFor)
	c.tokenMemo = newMemo[Identity](memoOptions{
		name: "token", size: cmp.Or(opts.TokenCacheSize, DefaultTokenCacheSize),
		ttl: cmp.Or(opts.TokenTTL, DefaultTokenTTL), negativeTTL: cmp.Or(opts.TokenNegativeTTL, DefaultTokenNegativeTTL),
		staleFor: stale, callTimeout: timeout, metrics: opts.Metrics,
	})
	c.decisions = newMemo[struct{}](memoOptions{
		name: "decision", size: cmp.Or(opts.DecisionCacheSize, DefaultDecisionCacheSize),
		ttl: cmp.Or(opts.DecisionTTL, DefaultDecisionTTL), negativeTTL: cmp.Or(opts.DecisionNegativeTTL, DefaultDecisionNegativeTTL),
		staleFor: stale, callTimeout: timeout, metrics: opts.Metrics,
	})
	c.viewMemo = newMemo[struct{}](memoOptions{
		name: "view", size: cmp.Or(opts.ViewCacheSize, DefaultViewCacheSize),
		ttl: cmp.Or(opts.DecisionTTL, DefaultDecisionTTL), negativeTTL: cmp.Or(opts.DecisionNegativeTTL, DefaultDecisionNegativeTTL),
		staleFor: stale, callTimeout: timeout, metrics: opts.Metrics,
	})
	limits := opts.Limits
	if c.allowAll() {
		// Nothing is refused for its credential: no failures to count,
		// and allow-all without other limits stays free of any check.
		limits.FailedAuthPerClient = 0
	}
	c.limiter = newLimiter(limits, opts.Metrics)
	for _, m := range opts.Modes {
		opts.Metrics.setMode(m)
	}
	if c.allowAll() {
		c.log.Warn("access: allow-all: anyone who can reach the router reaches every sandbox; choose --authz-mode=kubernetes (or tokenreview) on a shared cluster")
	}
	return c, nil
}

// Modes are the Checker's modes.
func (c *Checker) Modes() []Mode { return slices.Clone(c.modes) }

func (c *Checker) allowAll() bool { return len(c.modes) == 1 && c.modes[0] == ModeAllowAll }

// Enforcing reports whether Check can refuse anything: false for
// allow-all without limits, which the router then need not ask.
func (c *Checker) Enforcing() bool { return !c.allowAll() || c.limiter != nil }

// Caller is who an admitted request comes from, as far as Check knows.
type Caller struct {
	// User is the user a Kubernetes token or a client certificate names,
	// or a scoped token's subject; "" when unknown (allow-all, or a
	// scoped token without one).
	User   string
	Groups []string
	// Auth says what admitted the request: AuthKubernetesToken,
	// AuthScopedToken or AuthClientCertificate; "" when nothing was
	// checked (allow-all).
	Auth string
}

// The values of Caller.Auth.
const (
	AuthKubernetesToken   = "kubernetes-token"
	AuthScopedToken       = "scoped-token"
	AuthClientCertificate = "client-certificate"
)

// Admission is what Check says of an admitted request.
type Admission struct {
	Caller
	// Release frees the request's place under the sandbox's concurrency
	// limit: call it once, when the request has ended. Never nil.
	Release func()
}

// Check admits r for the sandbox it asks for (on port), or returns an
// *Error (a client that left: its context's error). sessionPath is where
// a browser session for the request may live: "/" for a sandbox reached
// by host name (its own origin), its path prefix for a path-routed one,
// "" on the router's shared host (no sessions).
func (c *Checker) Check(ctx context.Context, r *http.Request, sandbox resolver.Key, port uint16, sessionPath string) (Admission, error) {
	var client netip.Addr
	if c.limiter != nil {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			client = ap.Addr().Unmap()
		}
		if e := c.limiter.blocked(client); e != nil {
			return Admission{}, e
		}
	}
	var caller Caller
	if !c.allowAll() {
		var err error
		caller, err = c.check(ctx, r, sandbox, port, sessionPath)
		c.metrics.decided(err)
		if err != nil {
			if err == errInvalidCredentials && c.limiter != nil {
				// A credential refused (not one missing: that costs no
				// review and guesses nothing).
				c.limiter.failed(client)
			}
			return Admission{}, err
		}
	}
	if c.limiter == nil {
		return Admission{Caller: caller, Release: noRelease}, nil
	}
	// The limits' identity: the user, or for a scoped token the sandbox
	// it is for (its holders are one party to the limits).
	identity := caller.User
	if caller.Auth == AuthScopedToken {
		identity = "scoped:" + sandbox.Namespace + "/" + sandbox.Name
	}
	release, e := c.limiter.admit(identity, client, sandbox)
	if e != nil {
		return Admission{}, e
	}
	return Admission{Caller: caller, Release: release}, nil
}

// check authenticates and authorizes r and says who the caller is.
func (c *Checker) check(ctx context.Context, r *http.Request, sandbox resolver.Key, port uint16, sessionPath string) (Caller, error) {
	token, from, ok := c.credential(r, sessionPath != "")
	if !ok {
		if cert := verifiedClientCert(r); cert != nil && c.tokens != nil {
			return c.checkCertificate(ctx, r, cert, sandbox)
		}
		return Caller{}, errMissingCredentials
	}
	if token == "" {
		return Caller{}, errInvalidCredentials
	}
	if from == fromCookie && !c.sameOriginOrAllowed(r) {
		return Caller{}, errCrossOrigin
	}
	var caller Caller
	var expires time.Time
	switch {
	case c.scoped != nil && scoped.IsScoped(token):
		claims, err := c.checkScoped(r, token, sandbox, port)
		if err != nil {
			return Caller{}, err
		}
		caller, expires = Caller{User: claims.Subject, Auth: AuthScopedToken}, claims.Expires
	case c.tokens == nil:
		return Caller{}, errInvalidCredentials // only scoped tokens are taken
	default:
		id, err := c.authenticate(ctx, token)
		if err != nil {
			return Caller{}, err
		}
		if c.access != nil {
			if err := c.authorize(ctx, id, sandbox); err != nil {
				return Caller{}, err
			}
		}
		caller = Caller{User: id.User, Groups: id.Groups, Auth: AuthKubernetesToken}
	}
	if from == fromEntry {
		return caller, c.startSession(r, sessionPath, token, expires)
	}
	return caller, nil
}

// checkScoped verifies a scoped token and holds its claims against the
// request. A v2 token is bound to the UID of the instance the request
// reaches (currentUID): a sandbox deleted and created again under the
// same name is another sandbox.
func (c *Checker) checkScoped(r *http.Request, token string, sandbox resolver.Key, port uint16) (scoped.Claims, error) {
	claims, err := c.scoped.Verify(token)
	if err != nil {
		return claims, errInvalidCredentials
	}
	req := scoped.Request{Namespace: sandbox.Namespace, Name: sandbox.Name, Port: port, Method: r.Method, Path: r.URL.Path}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		req.Client = ap.Addr()
	}
	if claims.Version >= 2 && claims.Namespace == sandbox.Namespace && claims.Name == sandbox.Name {
		req.UID = c.currentUID(sandbox)
	}
	if !claims.Permits(req) {
		return claims, errForbidden
	}
	return claims, nil
}

// currentUID is the UID of the instance a request for k reaches, found as
// the router finds it: by name, or when the request pins a UID, the
// instance of that UID if it carries the name asked for ("" otherwise).
// An unclaimed warm-pool pod is reached only so, by its pod's name and
// UID, and a token for it is bound to those.
func (c *Checker) currentUID(k resolver.Key) string {
	res := c.sandboxes.Lookup(k)
	if k.UID != "" && res.Name != k.Name {
		return ""
	}
	return res.UID
}

// authenticate asks who token is, once per token and time to live.
func (c *Checker) authenticate(ctx context.Context, token string) (Identity, error) {
	key := digest(sha256.Sum256([]byte(token)))
	id, ok, hit := c.tokenMemo.cached(key)
	if !hit {
		var err error
		id, ok, err = c.tokenMemo.fetch(ctx, key, func(ctx context.Context) (Identity, bool, error) {
			id, ok, err := c.tokens.AuthenticateToken(ctx, token)
			if ok {
				id.digest = identityDigest(id)
			}
			return id, ok, err
		})
		switch {
		case err != nil && ctx.Err() != nil:
			return Identity{}, ctx.Err() // the client left
		case err != nil:
			c.log.Warn("access: token not reviewed", "err", err)
			return Identity{}, errUnavailable
		}
	}
	if !ok {
		return Identity{}, errInvalidCredentials
	}
	return id, nil
}

// authorize asks whether id may reach sandbox, once per identity, sandbox
// and time to live.
func (c *Checker) authorize(ctx context.Context, id Identity, sandbox resolver.Key) error {
	key := decisionKey(id, sandbox)
	_, ok, hit := c.decisions.cached(key)
	if !hit {
		var err error
		_, ok, err = c.decisions.fetch(ctx, key, func(ctx context.Context) (struct{}, bool, error) {
			allowed, err := c.access.MayReach(ctx, id, sandbox)
			return struct{}{}, allowed, err
		})
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			c.log.Warn("access: access not reviewed", "user", id.User, "namespace", sandbox.Namespace, "sandbox", sandbox.Name, "err", err)
			return errUnavailable
		}
	}
	if !ok {
		return errForbidden
	}
	return nil
}

// identityDigest sums everything a SubjectAccessReview depends on of an
// identity: user, UID, groups (in any order) and extra.
func identityDigest(id Identity) digest {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(id.User)
	field(id.UID)
	groups := slices.Clone(id.Groups)
	slices.Sort(groups)
	field(strings.Join(groups, "\x00"))
	keys := make([]string, 0, len(id.Extra))
	for k := range id.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		field(k)
		field(strings.Join(id.Extra[k], "\x00"))
	}
	var d digest
	h.Sum(d[:0])
	return d
}

// decisionKey is the digest of an identity's digest and a sandbox, built
// on the stack: a cached decision costs no allocation.
func decisionKey(id Identity, sandbox resolver.Key) digest {
	var buf [sha256.Size + 2*(2+253)]byte
	if len(sandbox.Namespace) > 253 || len(sandbox.Name) > 253 {
		// Longer than any Kubernetes name: not on the stack, but never
		// cut short (two names must never share a key).
		b := append(id.digest[:], sandbox.Namespace...)
		b = append(b, 0)
		return sha256.Sum256(append(b, sandbox.Name...))
	}
	n := copy(buf[:], id.digest[:])
	for _, s := range []string{sandbox.Namespace, sandbox.Name} {
		binary.LittleEndian.PutUint16(buf[n:], uint16(len(s)))
		n += 2
		n += copy(buf[n:], s)
	}
	return sha256.Sum256(buf[:n])
}
