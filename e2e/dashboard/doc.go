// Package dashboard holds the browser tests of the dashboard (package
// dashboard at the repository root) on the real API server: a real etcd
// and kube-apiserver (e2e/cluster), the simulated cluster (e2e/sim) and
// headless Chromium (Debian's package) driven through chromedp.
//
// The tests share one API server (env_test.go: started on first use,
// stopped in TestMain), with thirty sandboxes in team-a and team-b. A
// test may change a sandbox's mode or make extension objects; it puts
// them back or deletes them when it ends, and every test starts by
// putting back any sandbox left changed, so no test's counts depend on
// another's.
//
//   - TestDashboard (dashboard_test.go), on an in-process resolver/kube
//     Resolver: the overview's counts, the sandboxes table's search,
//     filters and sort, a suspension and a resumption through the API
//     server showing on the open page without a reload, the one-sandbox
//     page, and that a viewer without access to a namespace sees none of
//     it.
//   - TestExtensionViews (extensions_test.go): the same for the
//     extensions API's views (warm pools, templates, claims, the
//     overview's pool fill) through dashboard/kube's Catalog.
//   - TestDashboardThroughTheRouter (router_test.go): the router binary
//     (e2e/routerproc) with --authz-mode kubernetes and the dashboard's
//     listener: sign-in with a ServiceAccount token, RBAC deciding what
//     each viewer sees (a Role in one namespace; get on one sandbox), a
//     wake-up by a request through the router's listener showing on the
//     open page, in the sandbox's events and in the busiest sandboxes,
//     sign-out, a refused token, and a cross-origin sign-in refused.
//   - TestBrowserTableSmoke and BenchmarkBrowserTable (browserbench_test.go):
//     the table at 10,000 in-memory sandboxes, no API server.
//
// With DASHBOARD_SCREENSHOTS=1 the run also writes a screenshot of each
// view to docs/dashboard/: overview, sandboxes, sandbox and signin from
// the router's dashboard (signed in as team-a's viewer, with its activity
// figures and events), warmpools, templates and claims from
// TestExtensionViews.
package dashboard
