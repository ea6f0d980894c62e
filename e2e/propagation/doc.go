// Package propagation measures, on the real API server, how long a pod's
// readiness takes to reach the router: from the moment the Pod's Ready
// status write is sent to the router serving the sandbox's first request,
// with thousands of other sandboxes in the cache, against a plain Pod
// informer watching the same writes. BenchmarkPropagation is the
// measurement (make bench); TestPropagationSmoke runs the same path small
// in make test.
package propagation
