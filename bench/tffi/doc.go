// Command tffi measures the time to first instruction of a suspended
// sandbox through sandbox-router on any cluster: a platform team's real
// one, with its own kubelet, controller and network. For each mode
// (-modes probe,ready: the Sandbox's sandbox-router.dev/release-on
// annotation) it suspends the Sandbox -n times, waits (a Pod watch) until
// its pod is gone, sends one request through the router and times the
// first response byte against the request sent and against the new pod's
// Ready as its own watch saw it; with -metrics (the router's admin URL) it
// also prints the router's wake-up phases from its histograms.
//
//	go run ./bench/tffi -kubeconfig ~/.kube/config -namespace team-a -sandbox sb1 \
//	    -router https://sandboxes.example.com -host '{sandbox}.{namespace}.sandboxes.example.com' \
//	    -H 'Authorization: Bearer ...' -metrics http://127.0.0.1:9090 -n 20
//
// Without -host the X-Sandbox-ID and X-Sandbox-Namespace headers (and
// X-Sandbox-Port with -port) name the sandbox. The measuring is package
// tffi (bench/tffi/tffi), which the end-to-end tests run against the real
// API server (e2e/activator/tffi_bench_test.go). It writes only the
// Sandbox it is given, and restores its annotation (and its suspension,
// if it was suspended) at the end.
package main
