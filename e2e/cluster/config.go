package cluster

import (
	"k8s.io/client-go/rest"
)

// AdminConfig returns a client-go config for user "admin" (system:masters)
// that trusts the serving CA. Client-side rate limiting is raised far above
// client-go's default (5 QPS), which would otherwise throttle a test
// creating many objects. Each call returns a fresh copy.
func (c *Cluster) AdminConfig() *rest.Config {
	cfg := c.TokenConfig(c.AdminToken)
	cfg.QPS = 500
	cfg.Burst = 1000
	return cfg
}

// RouterConfig returns a client-go config for the unprivileged user
// "router", which RBAC allows nothing until a test or manifest grants it.
// It keeps client-go's default rate limits, so the code under test sets
// its own. Each call returns a fresh copy.
func (c *Cluster) RouterConfig() *rest.Config {
	return c.TokenConfig(c.RouterToken)
}

// TokenConfig returns a client-go config that authenticates with the bearer
// token (AdminToken, RouterToken, or a service-account token) and trusts the
// serving CA.
func (c *Cluster) TokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            c.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile},
		UserAgent:       "sandbox-router-e2e",
	}
}

// WriteKubeconfig writes a kubeconfig for the cluster that authenticates
// with token (for the router binary: c.RouterToken) and trusts the serving
// CA by its file path, so the file stays valid only while the cluster's work
// directory exists.
func (c *Cluster) WriteKubeconfig(path, token string) error {
	user := "token"
	switch token {
	case c.AdminToken:
		user = "admin"
	case c.RouterToken:
		user = "router"
	}
	return writeKubeconfig(path, c.URL, c.CAFile, user, token)
}
