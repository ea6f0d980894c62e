// Package browser holds the end-to-end tests of browser sessions with a
// real browser: headless Chromium, driven over the DevTools protocol
// (github.com/chromedp/chromedp), opens preview links to simulated
// sandboxes (e2e/sim, whose /page opens a WebSocket to its own origin or
// submits a form) through the router binary, its own process over HTTPS,
// on a real etcd and kube-apiserver. What a unit test with a cookie jar
// cannot show is shown here: what Chromium stores (host-only, HttpOnly,
// Secure, SameSite=Lax, the __Host- name), which requests it attaches the
// cookie to (SameSite keeps it off cross-site POSTs but not off same-site
// ones from another sandbox's page), and that the router refuses the
// cross-origin ones that carry it.
//
// Files: session_test.go is the test; env_test.go the API server, sim
// and router it runs against (one API server for the package);
// credentials_test.go the tokens and the certificate; chromium_test.go
// the browser and the actions on its tab; netlog_test.go what the tab
// sent and got back, from the protocol's Network events.
//
// Chromium reaches *.sandbox.test through a host-resolver rule that maps
// every name to 127.0.0.1, and trusts the router's self-signed certificate
// by its key alone. The tests need /usr/bin/chromium (Debian's package
// chromium) and fail, not skip, without it, unless
// SANDBOX_ROUTER_SKIP_BROWSER=1. Every wait is on a DOM state or a
// network event, bounded by a deadline; none sleeps.
//
// The package owns its cluster, sim, router and browser processes and
// stops each by its handle; it must not depend on the router's internal
// packages beyond what a client would know (token minting, RBAC names).
package browser
