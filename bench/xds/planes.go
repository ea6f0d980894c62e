package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/xds"
)

// The control planes under test.
const (
	implOurs     = "ours"     // package xds: the on-demand VHDS cache
	implLinear   = "linear"   // go-control-plane's LinearCache of every virtual host
	implSnapshot = "snapshot" // go-control-plane's SnapshotCache, one snapshot of every virtual host
)

// routerEndpoint is the router fleet the planes send suspended sandboxes to.
var routerEndpoint = netip.MustParseAddrPort("10.255.0.1:8080")

// servePlane serves impl's view of f over xDS on lis until ctx ends.
func servePlane(ctx context.Context, impl string, f *fleet, lis net.Listener) error {
	switch impl {
	case implOurs:
		s, err := xds.New(xds.Options{
			Resolver:        f,
			BaseDomains:     []string{baseDomain},
			DefaultPort:     sandboxPort,
			RouterEndpoints: []netip.AddrPort{routerEndpoint},
		})
		if err != nil {
			return err
		}
		return s.Serve(ctx, lis)
	case implLinear:
		lc := cache.NewLinearCache(resource.VirtualHostType, cache.WithInitialResources(allVirtualHosts(f)))
		go follow(ctx, f, func(changed map[string]types.Resource) error { return lc.UpdateResources(changed, nil) })
		return serveCache(ctx, lc, lis)
	case implSnapshot:
		sc := cache.NewSnapshotCache(true, oneNode{}, nil)
		all := make([]types.Resource, f.size())
		for i := range all {
			all[i] = referenceVirtualHost(i, f.at(i))
		}
		version := 0
		publish := func() error {
			snap, err := cache.NewSnapshot(strconv.Itoa(version), map[resource.Type][]types.Resource{resource.VirtualHostType: all})
			if err != nil {
				return err
			}
			version++
			return sc.SetSnapshot(ctx, oneNodeKey, snap)
		}
		if err := publish(); err != nil {
			return err
		}
		go follow(ctx, f, func(changed map[string]types.Resource) error {
			for name, vh := range changed {
				all[indexOfName(name)] = vh
			}
			return publish()
		})
		return serveCache(ctx, sc, lis)
	}
	return fmt.Errorf("unknown control plane %q (want %s, %s or %s)", impl, implOurs, implLinear, implSnapshot)
}

// allVirtualHosts is every sandbox's virtual host, by name: the reference
// caches hold all of them, since they cannot build one when it is asked for.
func allVirtualHosts(f *fleet) map[string]types.Resource {
	m := make(map[string]types.Resource, f.size())
	for i := range f.size() {
		m[vhdsName(i)] = referenceVirtualHost(i, f.at(i))
	}
	return m
}

// follow reads the resolver's feed as package xds does, and hands a
// reference cache the virtual hosts of each batch of changed sandboxes.
func follow(ctx context.Context, f *fleet, update func(map[string]types.Resource) error) {
	fd := f.Subscribe()
	defer fd.Close()
	for {
		keys, err := fd.Next(ctx)
		if err != nil {
			return
		}
		changed := make(map[string]types.Resource, len(keys))
		for _, k := range keys {
			if i := indexOfKey(k); i >= 0 {
				changed[vhdsName(i)] = referenceVirtualHost(i, f.Lookup(resolver.Key{Namespace: k.Namespace, Name: k.Name}))
			}
		}
		if err := update(changed); err != nil {
			panic(fmt.Sprintf("reference cache update: %v", err))
		}
	}
}

// serveCache serves a go-control-plane cache over ADS with go-control-plane's
// own server, with the gRPC settings package xds uses.
func serveCache(ctx context.Context, c cache.Cache, lis net.Listener) error {
	gs := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxConcurrentStreams(64),
	)
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, c, nil))
	go func() {
		<-ctx.Done()
		gs.Stop()
	}()
	if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// oneNode gives every client the same snapshot: one SetSnapshot per batch
// of changes, the cheapest way to use a SnapshotCache for a fleet.
type oneNode struct{}

const oneNodeKey = "fleet"

func (oneNode) ID(*core.Node) string { return oneNodeKey }
