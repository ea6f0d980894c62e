package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sandbox-router/sandbox-router/access"
	akube "github.com/sandbox-router/sandbox-router/access/kube"
	"github.com/sandbox-router/sandbox-router/router"
)

// startAccess builds the access checker of --authz-mode; nil for
// allow-all, which the router then skips. Reviews get their own client
// and budget: a relist burst of the informers must not delay them.
func startAccess(cfg *config, restCfg *rest.Config, reg prometheus.Registerer, log *slog.Logger) (router.Access, error) {
	mode, _ := access.ParseMode(cfg.AuthzMode) // validated
	opts := access.Options{
		Mode:                mode,
		TokenTTL:            cfg.AuthzTokenTTL,
		TokenNegativeTTL:    cfg.AuthzTokenNegTTL,
		TokenCacheSize:      cfg.AuthzTokenCacheSize,
		DecisionTTL:         cfg.AuthzDecisionTTL,
		DecisionNegativeTTL: cfg.AuthzDecisionNegTTL,
		DecisionCacheSize:   cfg.AuthzDecisionCacheSz,
		StaleFor:            cfg.AuthzStaleFor,
		Metrics:             access.NewMetrics(reg),
		Log:                 log.With("component", "access"),
	}
	if mode != access.ModeAllowAll {
		acfg := rest.CopyConfig(restCfg)
		acfg.QPS, acfg.Burst = float32(cfg.AuthzQPS), int(2*cfg.AuthzQPS)
		cs, err := kubernetes.NewForConfig(acfg)
		if err != nil {
			return nil, err
		}
		opts.Tokens = akube.NewTokenReviewer(cs.AuthenticationV1().TokenReviews(), cfg.AuthzAudiences)
		opts.Sandboxes = akube.NewAccessReviewer(cs.AuthorizationV1().SubjectAccessReviews())
	}
	checker, err := access.New(opts)
	if err != nil {
		return nil, err
	}
	if mode == access.ModeAllowAll {
		return nil, nil // nothing to check; the mode metric and the warning are out
	}
	return checker, nil
}
