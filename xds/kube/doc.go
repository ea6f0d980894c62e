// Package kube finds the router fleet's own endpoints for the xDS server:
// the ready addresses of the router's Service, from its EndpointSlices,
// through an informer limited to that Service's slices. It owns nothing
// else; the xDS server takes the addresses it reports.
package kube
