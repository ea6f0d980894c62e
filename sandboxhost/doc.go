// Package sandboxhost is the host-name grammar of sandboxes:
// <port>-<id>.<namespace>.<base-domain> and <id>.<namespace>.<base-domain>.
//
// The data plane reads a request's Host with it, and the xDS server reads
// the virtual-host and listener names Envoy and gRPC clients ask for with
// it, so both agree on which sandbox a name means. It owns only the
// grammar: it knows nothing of HTTP, of the resolver's state or of what a
// caller may reach, and it must not allocate on a host that is already in
// canonical (lower-case) form.
package sandboxhost
