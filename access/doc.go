// Package access decides who is calling and which sandboxes they may
// reach. The router asks it once per request, after the routing key and
// before the sandbox is looked up, so that a caller who may not reach a
// sandbox learns nothing about it (not even whether it exists).
//
// Files by concern:
//   - access.go: the modes, the Checker the router calls, and its options;
//   - credentials.go: where a credential is read from a request;
//   - cache.go: the bounded caches of answers (LRU, time to live, a
//     shorter one for refusals, one call per key however many requests
//     race, stale answers while the API server cannot be reached);
//   - views.go: MayView, whether a principal may list or get the Sandbox
//     API's objects (the dashboard's question): a fixed set of verbs and
//     resources, cached in a memo of its own beside the data plane's
//     decisions;
//   - errors.go: the answers a refused request gets (401, 403, 503);
//   - metrics.go.
//
// It talks to Kubernetes only through interfaces of its own:
// TokenAuthenticator (who a bearer token is: TokenReview),
// SandboxAuthorizer (whether an identity may reach a sandbox:
// SubjectAccessReview) and ViewAuthorizer (whether it may list or get an
// object: SubjectAccessReview); access/kube implements them with
// client-go. It
// never forwards a credential and never dials a sandbox.
package access
