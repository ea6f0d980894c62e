package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sandbox-router/sandbox-router/access"
	akube "github.com/sandbox-router/sandbox-router/access/kube"
	"github.com/sandbox-router/sandbox-router/access/scoped"
	"github.com/sandbox-router/sandbox-router/router"
)

// startAccess builds the access checker of --authz-mode (nil for
// allow-all, which the router then skips) and the minting endpoint of
// --authz-mint-signing-key (nil without). Reviews get their own client
// and budget: a relist burst of the informers must not delay them.
func startAccess(ctx context.Context, cfg *config, res router.Resolver, restCfg *rest.Config, reg prometheus.Registerer, log *slog.Logger) (router.Access, http.Handler, error) {
	modes, _ := access.ParseModes(cfg.AuthzMode) // validated
	log = log.With("component", "access")
	opts := access.Options{
		Modes:               modes,
		TokenTTL:            cfg.AuthzTokenTTL,
		TokenNegativeTTL:    cfg.AuthzTokenNegTTL,
		TokenCacheSize:      cfg.AuthzTokenCacheSize,
		DecisionTTL:         cfg.AuthzDecisionTTL,
		DecisionNegativeTTL: cfg.AuthzDecisionNegTTL,
		DecisionCacheSize:   cfg.AuthzDecisionCacheSz,
		StaleFor:            cfg.AuthzStaleFor,
		Sessions: access.Sessions{Cookie: cfg.AuthzCookieName, EntryParam: cfg.AuthzCookieQueryParam,
			SameSite: sameSiteModes[cfg.AuthzCookieSameSite], AllowedOrigins: cfg.AuthzCookieOrigins,
			TrustForwardedProto: cfg.AuthzTrustFwdProto},
		Limits: access.Limits{
			PerIdentity: rate.Limit(cfg.LimitIdentityRPS), PerIdentityBurst: cfg.LimitIdentityBurst,
			PerSandbox: rate.Limit(cfg.LimitSandboxRPS), PerSandboxBurst: cfg.LimitSandboxBurst,
			ConcurrentPerSandbox: cfg.LimitSandboxConcurrent,
			FailedAuthPerClient:  rate.Limit(cfg.LimitFailedAuthPerMin / 60), FailedAuthPerClientBurst: cfg.LimitFailedAuthBurst,
			TableSize: cfg.LimitTableSize,
		},
		Metrics: access.NewMetrics(reg),
		Log:     log,
	}
	if slices.Contains(modes, access.ModeTokenReview) || slices.Contains(modes, access.ModeKubernetes) {
		acfg := rest.CopyConfig(restCfg)
		acfg.QPS, acfg.Burst = float32(cfg.AuthzQPS), int(2*cfg.AuthzQPS)
		cs, err := kubernetes.NewForConfig(acfg)
		if err != nil {
			return nil, nil, err
		}
		opts.Tokens = akube.NewTokenReviewer(cs.AuthenticationV1().TokenReviews(), cfg.AuthzAudiences)
		opts.Access = akube.NewAccessReviewer(cs.AuthorizationV1().SubjectAccessReviews())
		if cfg.Dashboard.Listen != "" {
			// The dashboard's list and get reviews have a client and a
			// budget of their own: a page view asks per namespace, and
			// must never slow the data plane's reviews down.
			vcfg := rest.CopyConfig(restCfg)
			vcfg.QPS, vcfg.Burst = float32(cfg.Dashboard.ReviewQPS), int(2*cfg.Dashboard.ReviewQPS)
			vcs, err := kubernetes.NewForConfig(vcfg)
			if err != nil {
				return nil, nil, err
			}
			opts.Views = akube.NewAccessReviewer(vcs.AuthorizationV1().SubjectAccessReviews())
		}
	}
	if slices.Contains(modes, access.ModeScopedToken) {
		v, err := scoped.NewVerifier(scoped.VerifierOptions{SecretFile: cfg.AuthzScopedSecretFile, PublicKeyDir: cfg.AuthzScopedKeyDir, Log: log})
		if err != nil {
			return nil, nil, err
		}
		go func() {
			if err := v.Watch(ctx); err != nil {
				log.Error("scoped token key reload disabled", "err", err)
			}
		}()
		opts.Scoped, opts.Sandboxes = v, res
	}
	checker, err := access.New(opts)
	if err != nil {
		return nil, nil, err
	}
	if !checker.Enforcing() {
		return nil, nil, nil // allow-all without limits: nothing to check; the mode metric and the warning are out
	}
	if cfg.AuthzMintKey == "" {
		return checker, nil, nil
	}
	minter, err := newMinter(cfg, checker)
	if err != nil {
		return nil, nil, err
	}
	return checker, minter, nil
}

// newMinter reads the signing key and refuses one whose public half the
// router's own verifier would not find under its id: every token minted
// would be refused.
func newMinter(cfg *config, checker *access.Checker) (*access.Minter, error) {
	pemData, err := os.ReadFile(cfg.AuthzMintKey)
	if err != nil {
		return nil, fmt.Errorf("authz-mint-signing-key: %w", err)
	}
	priv, err := scoped.ParsePrivateKey(pemData)
	if err != nil {
		return nil, fmt.Errorf("authz-mint-signing-key %s: %w", cfg.AuthzMintKey, err)
	}
	kid := cfg.mintKeyID()
	pubPath := filepath.Join(cfg.AuthzScopedKeyDir, kid+".pem")
	pubData, err := os.ReadFile(pubPath)
	if err != nil {
		return nil, fmt.Errorf("authz-mint-signing-key: its public key must be %s: %w", pubPath, err)
	}
	pub, err := scoped.ParsePublicKey(pubData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pubPath, err)
	}
	if !pub.Equal(priv.Public()) {
		return nil, fmt.Errorf("authz-mint-signing-key: %s is not its public key", pubPath)
	}
	baseDomain := ""
	if len(cfg.BaseDomains) > 0 {
		baseDomain = strings.Trim(strings.ToLower(cfg.BaseDomains[0]), ".") // as the router reads it
	}
	var public *url.URL
	if cfg.AuthzMintPublicURL != "" {
		public, _ = url.Parse(cfg.AuthzMintPublicURL) // validated
	}
	return access.NewMinter(checker, access.MintOptions{Key: priv, KeyID: kid, DefaultTTL: cfg.AuthzMintDefaultTTL, MaxTTL: cfg.AuthzMintMaxTTL,
		PublicURL: public, BaseDomain: baseDomain, PathPrefix: cfg.PathRoutingPrefix, EntryParam: cfg.AuthzCookieQueryParam})
}
