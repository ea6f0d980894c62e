// Package xds tests the router's xDS control plane end to end on the real
// API server: the router binary serves xDS from its informer-backed
// resolver, with the router fleet read from its Service's EndpointSlices,
// and grpc-go's own xDS client dials sandboxes by host name, straight to
// their pods, through the router while they are suspended (held, resumed),
// and to the new pod after a move.
package xds
