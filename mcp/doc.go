// Package mcp is the router's MCP endpoint: sandboxes as tools for
// MCP-enabled LLM runtimes, served over Streamable HTTP at /mcp on a host
// of the router's own (built on github.com/modelcontextprotocol/go-sdk).
//
// Every tool acts for the caller and only on what the caller may reach:
// the caller is authenticated like a data plane request (a Kubernetes
// token, or a scoped token), a sandbox the caller may not reach is
// reported exactly as one that does not exist, runtime calls (execute,
// files) go through the router's own data path (in process, with the
// caller's credential, so its access check, activator and limits apply
// and a suspended sandbox is woken), and writes to the cluster use the
// caller's own Kubernetes token (Cluster), never the router's.
//
// Files by concern:
//   - server.go: Options, the HTTP handler, one MCP server per identity;
//   - auth.go: who is calling, the protected-resource metadata, the
//     session bounds;
//   - tools.go: the tool table (names, descriptions, schemas) and the
//     per-caller limits every call passes;
//   - args.go: the validation of every argument a model sends;
//   - sandboxes.go: what a caller sees (list_sandboxes, get_sandbox);
//   - lifecycle.go: resume, suspend, create, delete, preview links;
//   - runtime.go: execute_command and the file tools, over dataplane.go
//     (an in-process HTTP round trip into the router);
//   - resources.go: the caller's sandboxes as resources, updated from the
//     resolver's feed;
//   - metrics.go.
//
// It never holds a Kubernetes client of its own, never dials a sandbox
// except through the router, and never forwards the caller's credential
// to a sandbox (the router strips it).
package mcp
