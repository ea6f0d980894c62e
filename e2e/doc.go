// Package e2e holds the end-to-end harness of sandbox-router: e2e/cluster
// (a real etcd + kube-apiserver built from source, on loopback),
// e2e/sim (a simulated sandbox controller and kubelet that gives every
// Sandbox a Pod and a real HTTP backend on its own loopback address),
// e2e/routerproc (builds and runs the router binary), e2e/deploy (the
// manifests under deploy/, their RBAC checked on the real API server), and
// the tests of the binary on the real API server: e2e/routing (routing by
// name, host and UID, pods moving, warm pools, both versions, the API
// server killed under traffic), e2e/activator (scale to zero, the drain)
// and e2e/propagation (the Ready-to-routable latency), e2e/access (who may
// reach which sandbox: RBAC, scoped tokens, client certificates, limits,
// minting), e2e/mcp (the MCP endpoint with the Go SDK's client and the
// official TypeScript SDK, as two identities), e2e/mcpkube (mcp/kube's
// writes with a caller's own token, and the audit log that names the
// caller), e2e/browser (headless Chromium through browser sessions),
// e2e/images (the image of make image pushed to an in-process registry,
// pulled by digest and checked, its binary run on the real API server;
// two builds, one digest), e2e/sdk (the stock upstream agent-sandbox Go SDK through the router
// binary; a Go module of its own, run with cd e2e/sdk && go test ./...),
// and the local demo
// (e2e/demo: the router binary in front of the sim on the real API
// server; its -smoke mode is a test). Nothing here is linked into the
// router binary.
package e2e
