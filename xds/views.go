package xds

import (
	"strconv"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// staticVersion is the version of resources that depend only on their
// name; it changes when this package changes what it builds.
const staticVersion = "v1"

// isEnvoy tells an Envoy (which fetches virtual hosts on demand and the
// fixed resources from the snapshot) from a proxyless gRPC client (which
// asks for per-host resources by name).
func isEnvoy(n *core.Node) bool { return n.GetUserAgentName() == "envoy" }

// virtualHostKind serves Envoy's VHDS requests: every host gets a virtual
// host, so that hosts the router must answer for (unknown sandboxes,
// requests routed by X-Sandbox-* headers to the router's own host) reach
// the router, which answers them.
func (n *namer) virtualHostKind() *kind {
	return &kind{
		typeURL:   resource.VirtualHostType,
		aliased:   true,
		namespace: RouteConfigName,
		target: func(name string) (target, bool) {
			host, ok := vhostHost(name)
			if !ok {
				return target{}, false
			}
			return n.hostTarget(host), true
		},
		build: func(name string, t target, r resolver.Result, _ routerSet) (string, proto.Message) {
			host, _ := vhostHost(name)
			return virtualHost(name, host, podAddr(t, r, n.allowLoopback))
		},
	}
}

// The proxyless view: a listener per dialed host, a cluster per sandbox
// port, its endpoints.
func (n *namer) grpcListenerKind() *kind {
	return &kind{
		typeURL:   resource.ListenerType,
		fullState: true,
		target: func(name string) (target, bool) {
			if len(name) > maxNameLen {
				return target{}, false
			}
			t := n.hostTarget(name)
			return t, t.ok
		},
		build: func(name string, t target, _ resolver.Result, _ routerSet) (string, proto.Message) {
			return staticVersion, grpcListener(name, t)
		},
	}
}

func (n *namer) grpcClusterKind() *kind {
	return &kind{
		typeURL:   resource.ClusterType,
		fullState: true,
		target: func(name string) (target, bool) {
			t := clusterTarget(name)
			return target{}, t.ok // a cluster does not change with its sandbox
		},
		build: func(name string, _ target, _ resolver.Result, _ routerSet) (string, proto.Message) {
			return staticVersion, grpcCluster(name, n.reportLoad)
		},
	}
}

func (n *namer) grpcEndpointsKind() *kind {
	return &kind{
		typeURL: resource.EndpointType,
		routers: true,
		target: func(name string) (target, bool) {
			t := clusterTarget(name)
			return t, t.ok
		},
		build: func(name string, t target, r resolver.Result, routers routerSet) (string, proto.Message) {
			return grpcEndpoints(name, podAddr(t, r, n.allowLoopback), routers.addrs, routers.version)
		},
	}
}

func versionInfo(n int64) string { return strconv.FormatInt(n, 10) }
