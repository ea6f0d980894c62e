// Package faults holds the data plane's fault-injection tests, and only
// them: a router on real sockets in front of sandboxes that misbehave in
// each way a sandbox can (a reset in the middle of a body, bytes after a
// complete response, a trailers-only gRPC error, a close during an
// upgrade, a stall before or inside the response), while a well-behaved
// sandbox takes steady traffic through the same router. The tests check
// that each client gets a clear answer or a clearly broken response, that
// the healthy sandbox never sees an error, and that no goroutine, file
// descriptor or upstream connection outlives the faults.
//
// The tests use the router's exported API only, as an embedding program
// would.
package faults
