// Package tffi measures the time to first instruction of a suspended
// sandbox on any cluster: it suspends one Sandbox through the API server,
// sends one request through the router, and times the first response byte
// against what its own Pod watch saw (the new pod, its address, Ready) and,
// when given the router's admin URL, against the router's own wake-up
// phases (sandbox_router_activator_wake_phase_seconds, before and after
// each mode). Each mode sets the Sandbox's release-on annotation: "probe"
// (the router's fast path: its own readiness probes release the held
// requests) or "ready" (they wait for Kubernetes' Ready).
//
// It is the core of the bench/tffi command, a package of its own so that
// the end-to-end tests run the same code against the real API server
// (e2e/activator/tffi_bench_test.go).
//
// What it cannot see from outside: when the sandbox's server began to
// listen. The router's probe_ok phase is the nearest observable, within
// the router's --probe-interval.
//
// The files: config.go (what to measure, its checks, the request),
// run.go (the iterations), pods.go (the Pod watch), metrics.go (the
// router's histograms and their quantiles), report.go (the figures and
// their markdown).
//
// It writes only the Sandbox it is given: spec.operatingMode (v1beta1) or
// spec.replicas (v1alpha1), and the release-on annotation, both restored
// at the end.
package tffi
