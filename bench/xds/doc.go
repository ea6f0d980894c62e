// Command bench-xds measures the xDS control plane (package xds) at
// 100,000 sandboxes against go-control-plane's own caches, in the same run,
// as issue 11 asks. It is run by bench/xds.sh (part of make bench), never by
// make test.
//
// Two processes, so that the control plane's CPU time and resident memory
// are its own: `bench-xds run` (the driver) starts `bench-xds serve` (the
// control plane) as a child, holds the raw delta-xDS clients itself and
// drives the control plane through a small HTTP control endpoint.
//
// The files, one concern each:
//   - fleet.go: the synthetic resolver (xds.Resolver) of N sandboxes, with
//     a coalesced feed, and the names and hosts the benchmark uses;
//   - vhost.go: VirtualHosts of the same shape as package xds builds, for
//     the reference caches, and the reading of a received one back into
//     the state it routes to;
//   - planes.go: the control planes: ours (xds.New), go-control-plane's
//     LinearCache and SnapshotCache, each fed from the same resolver;
//   - serve.go: the control-plane process: the plane, the flips, its own
//     CPU time and memory, over HTTP on loopback;
//   - client.go: a raw delta-xDS client speaking as Envoy's VHDS does (or
//     subscribing by name, or to everything, for the references);
//   - run.go: the driver: cold start, initial sync, the flip phase, the
//     matching of every flip to its subscribers' ACKs;
//   - report.go: results, percentiles, and the markdown tables of a run.
//
// apiserver_test.go (BenchmarkAPIServer) is the same measurement at 10,000
// sandboxes on the real API server, through the informer-backed resolver.
//
// It must not change what it measures: it imports package xds as a client
// would and reaches into nothing unexported.
package main
