// Package router is the data plane: it accepts client connections
// (HTTP/1.1, h2 over TLS, h2c), reads the routing key from the host name or
// the X-Sandbox-* headers, asks a Resolver which pod serves the sandbox,
// and proxies the request there, streaming bodies both ways, splicing
// upgraded connections and relaying gRPC trailers.
//
// Files by concern: key.go (routing key parsing and validation),
// router.go (the request path and retry rule), http1.go (the HTTP/1.1
// upstream exchange), pool.go and liveness_*.go (keep-alive connections),
// h2c.go (HTTP/2 to sandboxes), headers.go (hop-by-hop and forwarding
// rules), streaming.go (body copy and trailers), upgrade.go (WebSocket and
// other upgrades), errors.go (the error contract), server.go and certs.go
// (listeners, TLS reload, drain), metrics.go, accesslog.go, tracing.go.
//
// The package knows nothing of Kubernetes: the Resolver, Activator and
// ActivityTracker interfaces are its only view of sandboxes.
package router
