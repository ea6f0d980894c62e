// Package dashboard holds the browser tests of the dashboard (package
// dashboard at the repository root) on the real API server: a real etcd
// and kube-apiserver (e2e/cluster), the simulated cluster (e2e/sim), an
// in-process resolver/kube Resolver as the dashboard's source, and
// headless Chromium (Debian's package) driven through chromedp. They
// check the overview's counts, the sandboxes table's search, filters and
// sort, a suspension and a resumption through the API server showing on
// the open page without a reload, the one-sandbox page, and that a
// viewer without access to a namespace sees none of it. TestExtensionViews
// does the same for the extensions API's views (warm pools, templates,
// claims, the overview's pool fill) through dashboard/kube's Catalog.
//
// With DASHBOARD_SCREENSHOTS=1 the run also writes a screenshot of each
// view to docs/dashboard/{overview,sandboxes,sandbox,warmpools,templates,
// claims}.png.
package dashboard
