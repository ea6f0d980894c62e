// Package dashboard is the router's live web view: an overview of the
// sandboxes by state, a table of them that stays fast at tens of
// thousands of rows, a page per sandbox, and a stream of server-sent
// events that keeps the open pages current without reloading them and
// without polling anything.
//
// It reads the cluster only through the resolver's cache (Sandboxes:
// snapshot, lookups, lifecycles and the feed of changes) and what only
// the activator knows (Activity: requests held and open, last activity,
// the idle timeout in effect; optionally request counts and recent
// events), the router's own metrics registry (Options.Metrics), and
// the extensions API's templates, warm pools and claims through a
// catalog of informers (Extensions). It never calls the API server and never
// changes a sandbox: the view is read-only, so the worst a bug here can
// do is show something stale.
//
// Who may see what is the Viewer's business: every answer (table, counts,
// events, the one-sandbox view) is filtered by it, so a namespace a
// viewer may not list is absent, not hidden by the page. With
// Options.Auth (AccessAuth: the router's access Checker) viewers sign in
// with a Kubernetes token, sent as Authorization: Bearer or kept by the
// browser in a session cookie that the sign-in page sets; what they see
// is what RBAC lets them list or get. The cookie carries the token itself
// (HttpOnly, SameSite=Strict, the prefix's path, Secure with a __Host- or
// __Secure- name over HTTPS or with Options.SecureCookies), so any
// replica takes it without shared state and it works no longer than the
// token does; sign-in and sign-out are refused from other origins.
// Options.Viewer is the low-level alternative (tests, a proxy that
// authenticates): one per request from the request itself.
//
// Files by concern:
//   - handler.go: Options, the HTTP routes, security headers, errors, Run;
//   - sources.go: the interfaces it reads through (Sandboxes, Activity,
//     Viewer);
//   - catalog.go: its own copy of the resolver's state as immutable
//     generations, kept current from ONE subscription to the feed;
//   - order.go: the sorted orders of a generation, built once per
//     generation and shared by every request;
//   - rows.go: the JSON row and what it adds from lifecycles and activity;
//   - table.go: search, filters, sort and pagination (api/sandboxes);
//   - labels.go: the table's label selector (parse and match);
//   - details.go: what the catalog keeps of the resolver's Details (pod,
//     creation time, labels) for the table's columns and label filter;
//   - recent.go: reads of the activator and the extensions catalog shared
//     by every open page for a moment;
//   - overview.go: counts by state, warm-pool pods, the warm pools'
//     fill, held requests, busiest sandboxes, the last hour
//     (api/overview);
//   - stats.go: the samplers behind the activity figures, on one
//     goroutine; stats_busiest.go: request rates from the activator's
//     counts; stats_hour.go: the last hour from the router's registry
//     (resumes, idle suspensions, resume latency quantiles);
//   - sandbox.go: one sandbox (api/sandboxes/{namespace}/{name}), with
//     its recent events and curl examples;
//   - events.go: the coalesced, per-client bounded event stream
//     (api/events);
//   - signin.go: Options.Auth's sign-in, sign-out and api/session, and
//     the viewer every API answer starts with; signin_cookie.go: the
//     session cookie and the credential of a request; signin_guard.go:
//     the same-origin check of sign-in and sign-out, and the open-redirect
//     guard of the page to return to;
//   - access.go: AccessAuth, sign-in through the access package's Checker
//     (TokenReview, then list and get SubjectAccessReviews);
//   - extensions.go: the records of the extensions API (templates, warm
//     pools, claims) and the Extensions interface dashboard/kube's
//     Catalog satisfies (Options.Extensions, optional);
//   - extensions_api.go: api/warmpools, api/templates, api/claims (search,
//     namespace, pages, filtered by the Viewer) and api/kinds (which kinds
//     are served, synced or failing: a 403 is not "none");
//   - extensions_live.go: the catalog's changes as an "extensions" ping on
//     every event stream (it names nothing; the pages refetch);
//   - pages.go and static/: the embedded pages (plain HTML, one small
//     script, one style sheet; no CDN, no build chain).
//
// It must not import the router, the activator or anything that talks to
// Kubernetes (access is fine: it talks through interfaces of its own): the binary wires those in through the interfaces above.
package dashboard
