// Package router is the data plane: it accepts client connections
// (HTTP/1.1, h2 over TLS, h2c), reads the routing key from the host name or
// the X-Sandbox-* headers, asks a Resolver which pod serves the sandbox,
// and proxies the request there, streaming bodies both ways, relaying
// upgraded connections as tunnels and gRPC trailers.
//
// A request's steps, one file each, in the order it takes them:
// router.go (ServeHTTP, the loop over attempts and the retry rule),
// key.go (the routing key from the host or the X-Sandbox-* headers),
// request.go (method, target, body limit, the client's X-Sandbox-Timeout
// deadline), target.go (the resolver's answer and, for a sandbox that is
// not running, the activator's hold), forward.go (one attempt and the
// relay of its response), errors.go (the router's own answers: the error
// contract) and record.go (metrics, span and access log, however the
// request ends).
//
// Beside them: headers.go (the one header policy of both upstream
// protocols), http1.go (the HTTP/1.1 exchange), pool.go and liveness_*.go
// (the per-endpoint connection cap and the keep-alive pool), h2c.go
// (HTTP/2 to sandboxes), streaming.go (body copy and trailers), upgrade.go
// (the 101 handshake of WebSocket and other upgrades), tunnel.go and
// readiness_*.go (the tunnel that carries an upgraded connection, parked
// without a buffer while idle), limits.go (the caps on client
// connections, tunnels and sandbox connections under the descriptor
// limit), listener.go and descriptors_*.go (the capped listener: what a
// connection past the cap gets, and shedding when descriptors run out),
// server.go and certs.go
// (listeners, TLS reload, drain), metrics.go, accesslog.go, tracing.go.
// router/faults holds the fault-injection tests.
//
// The package knows nothing of Kubernetes: the Resolver, Activator and
// ActivityTracker interfaces are its only view of sandboxes.
package router
