// Package kube makes the MCP tools' writes to the cluster AS THE CALLER:
// it suspends and resumes Sandboxes (agents.x-k8s.io), creates
// SandboxClaims (extensions.agents.x-k8s.io), deletes a claim or a
// Sandbox, and lists Sandbox names, each with the caller's own Kubernetes
// bearer token, so that RBAC judges the caller and the API server's audit
// log names the caller (user.username), not the router.
//
// It owns the per-caller clients (a small LRU keyed by sha256 of the token;
// the token itself is never a key, never logged and never put in an error)
// and the mapping of the API server's answers onto the sentinel errors of
// package mcp (ErrForbidden, ErrNotFound, ErrConflict, ErrInvalid,
// ErrUnavailable), with the API server's message.
//
// What it must not do: use the router's credentials. Of the router's
// rest.Config it keeps the Host, the APIPath and the TLS trust (CA file or
// data, server name, insecure) and nothing else: no bearer token or token
// file, no client certificate, no exec or auth-provider plugin, no
// impersonation, no WrapTransport. A call without a token fails with
// ErrForbidden before any request is sent (an empty token would be the
// anonymous user, not the caller). The router needs no RBAC for anything
// done here; the callers need it:
//
//   - SetSuspended: patch on sandboxes;
//   - CreateClaim: create on sandboxclaims;
//   - Delete: get and delete on sandboxclaims and/or get and delete on
//     sandboxes (see Cluster.Delete for which, when);
//   - ListNames: list on sandboxes.
//
// It reads no informer and keeps no state of the cluster: every call asks
// the API server (one or, for Delete, up to four requests), bounded by
// Options.Timeout each, and rate limited per caller. It must not depend on
// any router package but mcp (for the errors), and mcp must not import it
// (cmd wires a *Cluster into mcp through mcp's own interface).
package kube
