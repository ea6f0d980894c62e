package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslog "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	loadstats "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/sandboxhost"
)

// Resolver is what the server reads sandboxes from.
type Resolver interface {
	Lookup
	Subscribe() resolver.Feed
	SyncedC() <-chan struct{}
}

// Options configure a Server.
type Options struct {
	Resolver Resolver
	// BaseDomains and DefaultPort read host names as the router does.
	BaseDomains []string
	DefaultPort uint16
	Envoy       EnvoyOptions
	// RouterEndpoints are the router fleet's data-plane addresses (plain
	// HTTP, h2c), where anything not running is sent. SetRouterEndpoints
	// replaces them.
	RouterEndpoints []netip.AddrPort
	// TLS, when set, serves xDS over TLS; with client certificates
	// required, a client's node ID or cluster must be one of its
	// certificate's names.
	TLS *tls.Config
	// ColdAfter: a virtual host an Envoy has not asked for in this long is
	// removed from it (default 30m); it asks again on its next request.
	ColdAfter time.Duration
	// AllowLoopbackPodIP publishes loopback pod addresses (local tests and
	// demos only); otherwise a sandbox whose status names one goes to the
	// router, which refuses it.
	AllowLoopbackPodIP bool
	// Activity, when set, is told of every sandbox Envoy or a proxyless
	// client reports traffic for (it went straight to the pod, so no
	// router saw it): the clients are configured to report (access logs,
	// load reports) to this server every ActivityInterval (default 30s).
	Activity         func(resolver.Key)
	ActivityInterval time.Duration
	// MaxNamesPerStream bounds the names one stream may hold per type
	// (default 100,000); past it, a subscribe is answered as not found.
	MaxNamesPerStream int
	Metrics           *Metrics
	Log               *slog.Logger
}

// Server is the xDS control plane.
type Server struct {
	opts     Options
	namer    *namer
	ondemand *onDemand
	envoy    cache.SnapshotCache
	mux      *cache.MuxCache
	log      *slog.Logger
	metrics  *Metrics

	mu      sync.Mutex
	streams map[streamID]*streamInfo
}

// streamInfo is what the callbacks know of a stream before and after its
// first request.
type streamInfo struct {
	certNames []string // verified client certificate's names
	node      *core.Node
	checked   bool
	kind      string // envoy, grpc (once checked)
}

const (
	classOnDemand = "ondemand"
	classEnvoy    = "envoy"
	envoyNodeKey  = "envoy" // every Envoy gets the same fixed resources
)

// New builds a Server; Serve runs it.
func New(opts Options) (*Server, error) {
	if opts.Resolver == nil {
		return nil, errors.New("xds: a resolver is required")
	}
	opts.Envoy.defaults()
	if opts.DefaultPort == 0 {
		return nil, errors.New("xds: a default sandbox port is required")
	}
	if opts.ColdAfter <= 0 {
		opts.ColdAfter = 30 * time.Minute
	}
	if opts.ActivityInterval <= 0 {
		opts.ActivityInterval = defaultActivityInterval
	}
	if opts.MaxNamesPerStream <= 0 {
		opts.MaxNamesPerStream = 100_000
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	n := &namer{domains: sandboxhost.NewDomains(opts.BaseDomains), defaultPort: opts.DefaultPort,
		allowLoopback: opts.AllowLoopbackPodIP, reportLoad: opts.Activity != nil}
	if opts.Activity != nil {
		opts.Envoy.activityInterval = opts.ActivityInterval
	}
	s := &Server{
		opts: opts, log: opts.Log, metrics: opts.Metrics, streams: map[streamID]*streamInfo{}, namer: n,
		ondemand: newOnDemand(opts.Resolver,
			[]*kind{n.virtualHostKind(), n.grpcListenerKind(), n.grpcClusterKind(), n.grpcEndpointsKind()},
			opts.Metrics, opts.MaxNamesPerStream),
		envoy: cache.NewSnapshotCache(true, constantHash{}, nil),
	}
	s.mux = &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return classify(r.GetTypeUrl(), r.GetNode()) },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return classify(r.GetTypeUrl(), r.GetNode()) },
		Caches:        map[string]cache.Cache{classOnDemand: s.ondemand, classEnvoy: s.envoy},
	}
	if err := s.SetRouterEndpoints(opts.RouterEndpoints); err != nil {
		return nil, err
	}
	return s, nil
}

// classify sends virtual hosts and every proxyless client's request to the
// on-demand cache, and an Envoy's fixed resources to the snapshot.
func classify(typeURL string, node *core.Node) string {
	if typeURL == resource.VirtualHostType || !isEnvoy(node) {
		return classOnDemand
	}
	return classEnvoy
}

type constantHash struct{}

func (constantHash) ID(*core.Node) string { return envoyNodeKey }

// SetRouterEndpoints replaces the router fleet's endpoints in both views.
func (s *Server) SetRouterEndpoints(addrs []netip.AddrPort) error {
	addrs = append([]netip.AddrPort(nil), addrs...)
	o := s.opts.Envoy
	version := routersVersion(addrs)
	snap, err := cache.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ListenerType: {envoyListener(o)},
		resource.RouteType:    {envoyRouteConfig(o)},
		resource.ClusterType:  {envoyPodsCluster(o), envoyRouterCluster(o)},
		resource.EndpointType: {loadAssignment(RouterCluster, addrs)},
	})
	if err != nil {
		return err
	}
	if err := snap.Consistent(); err != nil {
		return fmt.Errorf("xds: envoy snapshot: %w", err)
	}
	if err := s.envoy.SetSnapshot(context.Background(), envoyNodeKey, snap); err != nil {
		return err
	}
	s.ondemand.setRouters(addrs)
	return nil
}

// Serve waits for the resolver's first sync (a client must not be told a
// sandbox is unknown because the cache is still empty), then serves xDS
// on lis until ctx ends.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	select {
	case <-s.opts.Resolver.SyncedC():
	case <-ctx.Done():
		lis.Close()
		return nil
	}
	feed := s.opts.Resolver.Subscribe()
	go func() { _ = s.ondemand.run(ctx, feed) }()
	go s.sweep(ctx)

	gopts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxConcurrentStreams(64),
	}
	if s.opts.TLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(s.opts.TLS)))
	}
	gs := grpc.NewServer(gopts...)
	xs := serverv3.NewServer(ctx, s.mux, s)
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, xs)
	routeservice.RegisterVirtualHostDiscoveryServiceServer(gs, xs)
	if s.opts.Activity != nil {
		a := &activityServer{s: s}
		accesslog.RegisterAccessLogServiceServer(gs, a)
		loadstats.RegisterLoadReportingServiceServer(gs, a)
	}
	s.log.Info("xds serving", "addr", lis.Addr().String())
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		// Streams never end on their own: stop, and clients reconnect
		// to another replica with the versions they hold.
		gs.Stop()
	}()
	err := gs.Serve(lis)
	if ctx.Err() != nil {
		<-done // stopped as asked
		return nil
	}
	gs.Stop() // the listener failed: serve nothing half-way
	return err
}

func (s *Server) sweep(ctx context.Context) {
	t := time.NewTicker(s.opts.ColdAfter / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.ondemand.sweepCold(now.Add(-s.opts.ColdAfter), now.Add(-s.opts.ColdAfter))
		}
	}
}

// ---- Callbacks: node identity, stream accounting, the request bridge.

func (s *Server) open(ctx context.Context, id streamID) error {
	info := &streamInfo{certNames: certNames(ctx)}
	s.mu.Lock()
	s.streams[id] = info
	s.mu.Unlock()
	return nil
}

// request checks the node on a stream's first request, and notes which
// stream an on-demand request came on.
func (s *Server) request(id streamID, typeURL string, node *core.Node, req any) error {
	s.mu.Lock()
	info := s.streams[id]
	if info != nil && !info.checked {
		if err := checkNode(node, info.certNames); err != nil {
			s.mu.Unlock()
			s.metrics.refused.WithLabelValues("node_identity").Inc()
			s.log.Warn("xds stream refused", "node", node.GetId(), "cluster", node.GetCluster(), "error", err)
			return err
		}
		info.checked, info.kind = true, clientKind(node)
		s.metrics.clients.WithLabelValues(info.kind, protocolName(id.delta)).Inc()
	}
	s.mu.Unlock()
	if node == nil || classify(typeURL, node) == classOnDemand {
		s.ondemand.noteRequest(req, id)
	}
	return nil
}

func (s *Server) closed(id streamID) {
	s.mu.Lock()
	info := s.streams[id]
	delete(s.streams, id)
	s.mu.Unlock()
	if info != nil && info.checked {
		s.metrics.clients.WithLabelValues(info.kind, protocolName(id.delta)).Dec()
	}
	s.ondemand.closeStream(id.delta, id.id)
}

// certNames are the names of the stream's verified client certificate:
// its CN, DNS and URI SANs; none without one.
func certNames(ctx context.Context) []string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 {
		return nil
	}
	leaf := ti.State.VerifiedChains[0][0]
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	for _, u := range leaf.URIs {
		names = append(names, u.String())
	}
	return names
}

// checkNode requires a node ID, and with a verified client certificate,
// that the node's ID or cluster is one of the certificate's names: a
// client cannot speak for another.
func checkNode(n *core.Node, certNames []string) error {
	id := n.GetId()
	if id == "" || len(id) > 256 || len(n.GetCluster()) > 256 {
		return status.Error(codes.InvalidArgument, "xds: node.id is required (at most 256 bytes)")
	}
	if len(certNames) == 0 {
		return nil
	}
	for _, name := range certNames {
		if name != "" && (name == id || name == n.GetCluster()) {
			return nil
		}
	}
	return status.Error(codes.PermissionDenied, "xds: node id and cluster match none of the client certificate's names")
}

func clientKind(n *core.Node) string {
	if isEnvoy(n) {
		return "envoy"
	}
	return "grpc"
}

func protocolName(delta bool) string {
	if delta {
		return "delta"
	}
	return "sotw"
}

// OnStreamOpen and the rest implement go-control-plane's server callbacks.
func (s *Server) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return s.open(ctx, streamID{false, id})
}
func (s *Server) OnStreamClosed(id int64, _ *core.Node) { s.closed(streamID{false, id}) }
func (s *Server) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	return s.request(streamID{false, id}, req.GetTypeUrl(), s.nodeOf(req.GetNode(), streamID{false, id}), req)
}
func (s *Server) OnStreamResponse(context.Context, int64, *discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {
}
func (s *Server) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return s.open(ctx, streamID{true, id})
}
func (s *Server) OnDeltaStreamClosed(id int64, _ *core.Node) { s.closed(streamID{true, id}) }
func (s *Server) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	return s.request(streamID{true, id}, req.GetTypeUrl(), s.nodeOf(req.GetNode(), streamID{true, id}), req)
}
func (s *Server) OnStreamDeltaResponse(int64, *discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse) {
}
func (s *Server) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "xds: REST fetch is not served")
}
func (s *Server) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

// nodeOf is the request's node, or the stream's from its first request:
// clients send the node once.
func (s *Server) nodeOf(n *core.Node, id streamID) *core.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := s.streams[id]
	if info == nil {
		return n
	}
	if n != nil && info.node == nil {
		info.node = n
	}
	if n == nil {
		return info.node
	}
	return n
}
