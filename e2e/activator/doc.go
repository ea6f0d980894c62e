// Package activator holds the end-to-end tests of scale to zero: the real
// router binary, as the non-admin user "router" (cluster.GrantRouter), in
// front of the simulated sandboxes (e2e/sim, pods that take a start delay
// to become Ready) on a real etcd and kube-apiserver (e2e/cluster), whose
// audit log tells which API writes the routers made and when.
//
//   - hold_test.go: requests held for a suspended sandbox while one resume
//     wakes it (HTTP, WebSocket, gRPC streams, gRPC calls answered with a
//     trailers-only status by a real grpc-go server; one resume patch
//     however many requests), and the ways a hold ends without the sandbox (hold
//     timeout, full queue, client gone, sandbox deleted);
//   - idle_test.go: idle suspension with two replicas behind one Lease:
//     activity seen only by the replica that does not lead keeps a sandbox
//     running, an open WebSocket too, the leader's death hands the duty
//     over, and a request racing a suspension is served;
//   - drain_test.go: the drain after SIGTERM keeps routing from a live
//     cache (a sandbox suspended and woken, another moved to a new pod, a
//     request held across the listeners' close) and the process exits 0;
//   - bench_test.go: BenchmarkResumeCycle (and its smoke test), the resume
//     path's latencies against references measured in the same run.
//
// Nothing here asserts a wall-clock time: every wait is a condition with
// a deadline, and "stays running" is a watch over a bounded window. The
// only time comparisons are lower bounds that slowness cannot break (a
// sandbox is never suspended sooner than its idle timeout after the last
// activity began to end).
//
// A failed test prints each router's log without client-go's lines. To
// debug, SANDBOX_ROUTER_LOG_LEVEL=debug reaches the router binaries
// through the environment, and ACTIVATOR_E2E_KEEP_LOGS=<dir> keeps their
// whole logs there.
package activator
