// Package sdk proves that the stock upstream Go SDK
// (sigs.k8s.io/agent-sandbox/clients/go/sandbox, v1.0.1, unmodified) works
// through the router: Run, Write, Read, List and Exists from the SDK, via
// the router binary (routerproc), to the simulated cluster's sandboxes
// (e2e/sim serves the runtime API the SDK calls), on a real etcd and
// kube-apiserver (e2e/cluster). The SDK is pointed at the router with its
// APIURL option and sends a bearer token through its HTTPTransport option;
// the router checks it in Kubernetes mode (a ServiceAccount token from the
// TokenRequest API, RBAC on sandboxes/proxy) and with scoped tokens minted
// by the router binary's keygen and token subcommands.
//
// The SDK reaches sandboxes through SandboxClaims: the test installs the
// upstream SandboxClaim CRD (from the SDK's own module, the version it was
// built with) and plays the claim controller (claims_test.go), which makes
// a Sandbox for each claim, as upstream's does for a cold start; the sim
// then gives it a pod.
//
// A module of its own (see go.mod), so `go test ./...` at the repository
// root does not run it: run it with
//
//	cd e2e/sdk && go test -race -count=1 ./...
package sdk
