// Package xdsprobe is the demo's proxyless gRPC client: grpc-go's own xDS
// client, bootstrapped in the process to a plaintext xDS server, dials a
// sandbox as xds:///<port>-<sandbox>.<namespace>.<base-domain> and sends
// one standard health Check. The demo's checks (e2e/demo/xds.go) and the
// command it prints (e2e/demo/xdsclient) both use it, so the printed
// command does what the check did; e2e/xds dials through it too.
//
// It owns nothing but its channels; each Dial builds its own xDS client
// (not grpc-go's process-wide one, which reads GRPC_XDS_BOOTSTRAP).
package xdsprobe
