// Package activator is scale to zero: it holds requests aimed at a sandbox
// that is not running while it resumes the sandbox, and it suspends
// sandboxes that sat idle.
//
// Files by concern:
//   - activator.go: the hold path a request takes (admission against the
//     bounds, waiting, release under a per-sandbox concurrency cap);
//   - episode.go: one wake-up of one sandbox, shared by all the requests
//     held for it: a single resume, waiting on the resolver's notification,
//     and a connect probe of each requested port before release;
//   - probe.go: the connect probe;
//   - policy.go: which timeouts apply to a sandbox (idle: annotation,
//     namespace default, global default; hold: annotation, global default);
//   - activity.go: this replica's per-sandbox activity (requests in
//     flight, last activity), and the reporter that publishes it to the
//     other replicas as a coarse last-activity annotation;
//   - idle.go: the idle suspender, run by the one elected replica;
//   - events.go: the recent events of each sandbox (wake-ups, releases,
//     refusals, suspensions, failures), bounded, for people to read;
//   - view.go: View, what the activator knows gathered for a reader
//     (the dashboard's Activity);
//   - errors.go, metrics.go.
//
// It talks to Kubernetes only through the Sandboxes and Catalog (the
// resolver: lookups, lifecycles, the feed of changes) and Waker (resume,
// suspend, record activity) interfaces; activator/kube
// implements Waker and the leader election with client-go. It knows nothing
// of HTTP beyond the status codes of its errors.
package activator
