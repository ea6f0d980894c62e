// Package mcpkube holds the end-to-end test of mcp/kube on a real etcd and
// kube-apiserver (e2e/cluster): the MCP tools' cluster writes made with
// each caller's own ServiceAccount token (TokenRequest), judged by
// ordinary RBAC (Roles and RoleBindings per identity), next to the sim
// and its SandboxClaim controller (e2e/sim RunClaims, with e2e/sim's own
// SandboxClaim CRD). The router's identity ("router", which has no grant
// here at all) never appears: the API server's audit log names the
// ServiceAccount for every create and delete of a claim.
package mcpkube
