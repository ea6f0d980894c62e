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
	"slices"
	"strings"
	"time"

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
)

// ParseMode reads a mode's name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAllowAll, ModeTokenReview, ModeKubernetes:
		return m, nil
	}
	return "", fmt.Errorf("%q is not allow-all, tokenreview or kubernetes", s)
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

// Options configure a Checker. Zero durations and sizes take the defaults.
type Options struct {
	Mode Mode
	// Tokens is required by every mode but allow-all; Sandboxes by
	// ModeKubernetes.
	Tokens    TokenAuthenticator
	Sandboxes SandboxAuthorizer

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
	// StaleFor is how long past its time to live an answer keeps serving
	// while the API server cannot be reached (default 10m). Requests with
	// no answer at all then get 503, never 401 or 403.
	StaleFor time.Duration
	// CallTimeout bounds one API call (default 10s).
	CallTimeout time.Duration

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
	DefaultStaleFor            = 10 * time.Minute
	DefaultCallTimeout         = 10 * time.Second
)

// Checker admits or refuses requests. It is safe for concurrent use.
type Checker struct {
	mode      Mode
	tokens    TokenAuthenticator
	sandboxes SandboxAuthorizer
	tokenMemo *memo[Identity]
	decisions *memo[struct{}]
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
	switch opts.Mode {
	case ModeAllowAll:
	case ModeTokenReview:
		if opts.Tokens == nil {
			return nil, errors.New("access: mode tokenreview needs a TokenAuthenticator")
		}
	case ModeKubernetes:
		if opts.Tokens == nil || opts.Sandboxes == nil {
			return nil, errors.New("access: mode kubernetes needs a TokenAuthenticator and a SandboxAuthorizer")
		}
	default:
		return nil, fmt.Errorf("access: unknown mode %q", opts.Mode)
	}
	c := &Checker{mode: opts.Mode, tokens: opts.Tokens, sandboxes: opts.Sandboxes, metrics: opts.Metrics, log: opts.Log}
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
	opts.Metrics.setMode(opts.Mode)
	if opts.Mode == ModeAllowAll {
		c.log.Warn("access: allow-all: anyone who can reach the router reaches every sandbox; choose --authz-mode=kubernetes (or tokenreview) on a shared cluster")
	}
	return c, nil
}

// Mode is the Checker's mode.
func (c *Checker) Mode() Mode { return c.mode }

// Check admits r for the sandbox it asks for, or returns an *Error. The
// port is not part of any decision yet.
func (c *Checker) Check(ctx context.Context, r *http.Request, sandbox resolver.Key, port uint16) error {
	if c.mode == ModeAllowAll {
		return nil
	}
	err := c.check(ctx, r, sandbox)
	c.metrics.decided(err)
	return err
}

func (c *Checker) check(ctx context.Context, r *http.Request, sandbox resolver.Key) error {
	token, ok := bearerToken(r.Header)
	if !ok {
		return errMissingCredentials
	}
	if token == "" {
		return errInvalidCredentials
	}
	id, err := c.authenticate(ctx, token)
	if err != nil {
		return err
	}
	if c.mode == ModeTokenReview {
		return nil
	}
	return c.authorize(ctx, id, sandbox)
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
			allowed, err := c.sandboxes.MayReach(ctx, id, sandbox)
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
