// Package images holds the end-to-end tests of the router's image as
// make image builds it (package images): the real cross-compiled build of
// both platforms, once per test binary; a second build of the same commit
// that must give the same digests and bytes; the index pushed to
// go-containerregistry's in-process registry on 127.0.0.1 and pulled back
// by digest, its platforms, config, annotations and files checked (no
// shell, no executable but /sandbox-router); and the binary taken out of
// the pulled layers, run as the router against the real API server of
// e2e/cluster in front of a simulated sandbox, and asked its version.
package images
