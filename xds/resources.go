package xds

import (
	"hash/fnv"
	"net/netip"
	"strconv"
	"time"

	accesslogcfg "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	mutation "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	grpcaccesslog "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	headermutation "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	ondemand "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/on_demand/v3"
	routerfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// The HTTP filters of the Envoy listener, in order: on_demand fetches a
// virtual host the first time its host is seen, header_mutation applies
// the route's destination header before the router picks a host, and the
// router forwards.
const (
	onDemandFilter       = "envoy.filters.http.on_demand"
	headerMutationFilter = DestinationFilter
	routerFilter         = "envoy.filters.http.router"
)

// EnvoyOptions shape the fixed part of the Envoy view.
type EnvoyOptions struct {
	// ListenAddress and ListenPort are where each Envoy listens for
	// sandbox traffic (default 0.0.0.0:10000).
	ListenAddress string
	ListenPort    uint32
	// ControlPlaneCluster is the name the Envoy bootstrap gives this
	// control plane's cluster: VHDS is fetched from it over delta gRPC
	// (default "sandbox-router-xds").
	ControlPlaneCluster string
	// ConnectTimeout bounds a connection to a pod or a router (default 5s).
	ConnectTimeout time.Duration
	// activityInterval, when set (Options.Activity), has each Envoy send
	// its access log to the control plane, and an entry at this interval
	// for a request still in progress.
	activityInterval time.Duration
}

func (o *EnvoyOptions) defaults() {
	if o.ListenAddress == "" {
		o.ListenAddress = "0.0.0.0"
	}
	if o.ListenPort == 0 {
		o.ListenPort = 10000
	}
	if o.ControlPlaneCluster == "" {
		o.ControlPlaneCluster = "sandbox-router-xds"
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
}

// mustAny packs a message the package built itself; it cannot fail.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// adsSource is a config source on the client's ADS stream.
func adsSource() *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion:    core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
	}
}

// envoyListener is the one listener of the Envoy view: an HTTP connection
// manager whose routes come over RDS (and their virtual hosts over VHDS).
func envoyListener(o EnvoyOptions) *listener.Listener {
	manager := &hcm.HttpConnectionManager{
		StatPrefix: "sandboxes",
		CodecType:  hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: RouteConfigName,
		}},
		HttpFilters: []*hcm.HttpFilter{
			{Name: onDemandFilter, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&ondemand.OnDemand{})}},
			{Name: headerMutationFilter, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&headermutation.HeaderMutation{})}},
			{Name: routerFilter, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerfilter.Router{})}},
		},
		// WebSockets and other upgrades pass through to the sandbox.
		UpgradeConfigs: []*hcm.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}},
		// Sandboxes stream (SSE, long polls, gRPC streams): no idle
		// timeout per stream; the connection's own timeouts still apply.
		StreamIdleTimeout: durationpb.New(0),
	}
	if o.activityInterval > 0 {
		// Traffic to pods passes no router: the access log tells the
		// control plane which sandboxes are in use (activity.go).
		manager.AccessLog = []*accesslogcfg.AccessLog{{
			Name: "envoy.access_loggers.http_grpc",
			ConfigType: &accesslogcfg.AccessLog_TypedConfig{TypedConfig: mustAny(&grpcaccesslog.HttpGrpcAccessLogConfig{
				CommonConfig: &grpcaccesslog.CommonGrpcAccessLogConfig{
					LogName:             "sandbox-activity",
					TransportApiVersion: core.ApiVersion_V3,
					GrpcService: &core.GrpcService{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{
						EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: o.ControlPlaneCluster},
					}},
					BufferFlushInterval: durationpb.New(time.Second),
				},
			})},
		}}
		manager.AccessLogOptions = &hcm.HttpConnectionManager_HcmAccessLogOptions{
			AccessLogFlushInterval: durationpb.New(o.activityInterval),
		}
	}
	return &listener.Listener{
		Name: ListenerName,
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address:       o.ListenAddress,
			PortSpecifier: &core.SocketAddress_PortValue{PortValue: o.ListenPort},
		}}},
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(manager)},
		}}}},
	}
}

// envoyRouteConfig has no virtual host of its own and no catch-all: every
// host is fetched on demand over VHDS (delta gRPC, the only transport VHDS
// has), from the bootstrap's control-plane cluster.
func envoyRouteConfig(o EnvoyOptions) *route.RouteConfiguration {
	return &route.RouteConfiguration{
		Name: RouteConfigName,
		Vhds: &route.Vhds{ConfigSource: &core.ConfigSource{
			ResourceApiVersion: core.ApiVersion_V3,
			ConfigSourceSpecifier: &core.ConfigSource_ApiConfigSource{ApiConfigSource: &core.ApiConfigSource{
				ApiType:             core.ApiConfigSource_DELTA_GRPC,
				TransportApiVersion: core.ApiVersion_V3,
				GrpcServices: []*core.GrpcService{{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: o.ControlPlaneCluster},
				}}},
			}},
		}},
	}
}

// followDownstream speaks to the upstream what the client spoke: HTTP/2
// (gRPC) as h2c, HTTP/1.1 as HTTP/1.1.
func followDownstream() map[string]*anypb.Any {
	return map[string]*anypb.Any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamhttp.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_UseDownstreamProtocolConfig{
				UseDownstreamProtocolConfig: &upstreamhttp.HttpProtocolOptions_UseDownstreamHttpConfig{
					HttpProtocolOptions:  &core.Http1ProtocolOptions{},
					Http2ProtocolOptions: &core.Http2ProtocolOptions{},
				},
			},
		}),
	}
}

// envoyPodsCluster reaches whatever podIP:port the route wrote into
// DestinationHeader. One cluster serves every running sandbox, so a
// sandbox costs Envoy a virtual host, not a cluster.
func envoyPodsCluster(o EnvoyOptions) *cluster.Cluster {
	return &cluster.Cluster{
		Name:                 PodsCluster,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST},
		LbPolicy:             cluster.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(o.ConnectTimeout),
		LbConfig: &cluster.Cluster_OriginalDstLbConfig_{OriginalDstLbConfig: &cluster.Cluster_OriginalDstLbConfig{
			UseHttpHeader:  true,
			HttpHeaderName: DestinationHeader,
		}},
		TypedExtensionProtocolOptions: followDownstream(),
	}
}

// envoyRouterCluster is the router fleet, its endpoints over EDS.
func envoyRouterCluster(o EnvoyOptions) *cluster.Cluster {
	return &cluster.Cluster{
		Name:                          RouterCluster,
		ClusterDiscoveryType:          &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:              &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		LbPolicy:                      cluster.Cluster_LEAST_REQUEST,
		ConnectTimeout:                durationpb.New(o.ConnectTimeout),
		TypedExtensionProtocolOptions: followDownstream(),
	}
}

// loadAssignment lists addrs in one locality, as grpc-go requires.
func loadAssignment(name string, addrs []netip.AddrPort) *endpoint.ClusterLoadAssignment {
	lb := make([]*endpoint.LbEndpoint, 0, len(addrs))
	for _, a := range addrs {
		lb = append(lb, &endpoint.LbEndpoint{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
			Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
				Address:       a.Addr().String(),
				PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(a.Port())},
			}}},
		}}})
	}
	return &endpoint.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpoint.LocalityLbEndpoints{{
			Locality:            &core.Locality{Region: "sandbox-router"},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints:         lb,
		}},
	}
}

// virtualHost is the Envoy route for one host: straight to pod (the
// address of a running sandbox's pod, podAddr's answer), else to the
// router fleet with the Host kept, so the router's activator holds the
// request and resumes the sandbox (and the router answers unknown hosts
// with its own errors). Its version is a pure function of its content, the
// same on every router replica, so a client that reconnects to another
// replica is sent only what changed.
func virtualHost(name, host string, pod netip.AddrPort) (string, proto.Message) {
	vh := &route.VirtualHost{Name: name, Domains: []string{host}}
	rt := &route.Route{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}}}
	vh.Routes = []*route.Route{rt}
	if !pod.IsValid() {
		// The router cluster is not ORIGINAL_DST: a destination header a
		// client sent means nothing there, and the router ignores it.
		rt.Action = routeTo(RouterCluster)
		return "router", vh
	}
	dest := pod.String()
	rt.Action = routeTo(PodsCluster)
	// Overwrite whatever the client sent: the destination is ours.
	rt.TypedPerFilterConfig = map[string]*anypb.Any{headerMutationFilter: mustAny(&headermutation.HeaderMutationPerRoute{
		Mutations: &headermutation.Mutations{RequestMutations: []*mutation.HeaderMutation{{
			Action: &mutation.HeaderMutation_Append{Append: &core.HeaderValueOption{
				Header:       &core.HeaderValue{Key: DestinationHeader, Value: dest},
				AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}},
		}}},
	})}
	return dest, vh
}

// routeTo forwards to a cluster with no route timeout: sandboxes stream.
func routeTo(clusterName string) *route.Route_Route {
	return &route.Route_Route{Route: &route.RouteAction{
		ClusterSpecifier: &route.RouteAction_Cluster{Cluster: clusterName},
		Timeout:          durationpb.New(0),
	}}
}

// grpcListener is the proxyless view's listener for one dialed target: an
// api_listener whose inline route sends every RPC to the sandbox port's
// cluster. It depends only on its name.
func grpcListener(name string, t target) proto.Message {
	manager := &hcm.HttpConnectionManager{
		StatPrefix: "sandbox-grpc",
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
			Name: name,
			VirtualHosts: []*route.VirtualHost{{
				Name:    name,
				Domains: []string{"*"},
				Routes: []*route.Route{{
					Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: ""}},
					Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: clusterName(t)}}},
				}},
			}},
		}},
		HttpFilters: []*hcm.HttpFilter{{Name: routerFilter, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerfilter.Router{})}}},
	}
	return &listener.Listener{Name: name, ApiListener: &listener.ApiListener{ApiListener: mustAny(manager)}}
}

// grpcCluster is one sandbox port's cluster; its endpoints come over EDS.
// With reportLoad the client reports the cluster's load to this server
// (the activity of traffic no router sees).
func grpcCluster(name string, reportLoad bool) proto.Message {
	c := &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		LbPolicy:             cluster.Cluster_ROUND_ROBIN,
	}
	if reportLoad {
		c.LrsServer = &core.ConfigSource{ConfigSourceSpecifier: &core.ConfigSource_Self{Self: &core.SelfConfigSource{}}}
	}
	return c
}

// grpcEndpoints is where one sandbox port is served: its pod when it
// runs (pod valid), else the router fleet, which holds the RPC and
// resumes the sandbox.
func grpcEndpoints(name string, pod netip.AddrPort, routers []netip.AddrPort, routersVersion string) (string, proto.Message) {
	if pod.IsValid() {
		return "pod:" + pod.String(), loadAssignment(name, []netip.AddrPort{pod})
	}
	return "router:" + routersVersion, loadAssignment(name, routers)
}

// podAddr is where a client may connect for t: the pod of a running
// sandbox, at an address a pod can have. A loopback, unspecified,
// link-local or multicast address (whoever can write a Sandbox's or a
// pod's status could forge one) would have Envoy connect to its own host,
// its admin port or a metadata service: such a sandbox goes to the router,
// which refuses it. Loopback is allowed only for local tests and demos.
func podAddr(t target, r resolver.Result, allowLoopback bool) netip.AddrPort {
	ip := r.PodIP
	if !t.ok || r.State != resolver.StateRunning || !ip.IsValid() {
		return netip.AddrPort{}
	}
	if ip.IsLoopback() && !allowLoopback || ip.IsUnspecified() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, t.port)
}

// routersVersion names a set of router endpoints by content.
func routersVersion(addrs []netip.AddrPort) string {
	h := fnv.New64a()
	for _, a := range addrs {
		h.Write([]byte(a.String()))
		h.Write([]byte{','})
	}
	return strconv.FormatUint(h.Sum64(), 36)
}
