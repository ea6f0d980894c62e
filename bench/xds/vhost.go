package main

import (
	"errors"
	"fmt"
	"net/netip"

	mutation "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	headermutation "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/xds"
)

// headerMutationFilter is the HTTP filter whose per-route config carries
// the destination, as in package xds's Envoy listener.
const headerMutationFilter = xds.DestinationFilter

// referenceVirtualHost is the virtual host the reference caches serve for
// sandbox i: the shape package xds gives it (one catch-all route, to the
// pods' ORIGINAL_DST cluster with the destination header written by a
// header_mutation per-route config, or to the router fleet), built here
// because the reference caches take whole protos.
func referenceVirtualHost(i int, r resolver.Result) *route.VirtualHost {
	rt := &route.Route{
		Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
		Action: &route.Route_Route{Route: &route.RouteAction{
			ClusterSpecifier: &route.RouteAction_Cluster{Cluster: xds.RouterCluster},
			Timeout:          durationpb.New(0),
		}},
	}
	if r.State == resolver.StateRunning && r.PodIP.IsValid() {
		rt.GetRoute().ClusterSpecifier = &route.RouteAction_Cluster{Cluster: xds.PodsCluster}
		m := &mutation.HeaderMutation{Action: &mutation.HeaderMutation_Append{Append: &core.HeaderValueOption{
			Header:       &core.HeaderValue{Key: xds.DestinationHeader, Value: netip.AddrPortFrom(r.PodIP, sandboxPort).String()},
			AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}}}
		perRoute, err := anypb.New(&headermutation.HeaderMutationPerRoute{
			Mutations: &headermutation.Mutations{RequestMutations: []*mutation.HeaderMutation{m}},
		})
		if err != nil {
			panic(err) // a message of our own making
		}
		rt.TypedPerFilterConfig = map[string]*anypb.Any{headerMutationFilter: perRoute}
	}
	return &route.VirtualHost{Name: vhdsName(i), Domains: []string{hostOf(i)}, Routes: []*route.Route{rt}}
}

// readSignature reads a received virtual host back into the signature of
// the state it routes to (see signature), checking that its cluster agrees
// with its header mutation. A resource without a body reads as "absent".
func readSignature(res *discovery.Resource) (string, error) {
	if res.GetResource() == nil {
		return "absent", nil
	}
	vh := &route.VirtualHost{}
	if err := res.GetResource().UnmarshalTo(vh); err != nil {
		return "", err
	}
	if len(vh.GetRoutes()) != 1 {
		return "", fmt.Errorf("%s: %d routes, want 1", res.GetName(), len(vh.GetRoutes()))
	}
	rt := vh.GetRoutes()[0]
	cluster := rt.GetRoute().GetCluster()
	if cluster == xds.RouterCluster {
		if len(rt.GetTypedPerFilterConfig()) != 0 {
			return "", fmt.Errorf("%s: a per-route config on the router's route", res.GetName())
		}
		return "router", nil
	}
	perRoute := &headermutation.HeaderMutationPerRoute{}
	if err := rt.GetTypedPerFilterConfig()[headerMutationFilter].UnmarshalTo(perRoute); err != nil {
		return "", fmt.Errorf("%s: %w", res.GetName(), err)
	}
	muts := perRoute.GetMutations().GetRequestMutations()
	if len(muts) != 1 {
		return "", fmt.Errorf("%s: %d header mutations, want 1", res.GetName(), len(muts))
	}
	switch a := muts[0].GetAction().(type) {
	case *mutation.HeaderMutation_Append:
		if cluster != xds.PodsCluster || a.Append.GetHeader().GetKey() != xds.DestinationHeader {
			return "", fmt.Errorf("%s: sets %s but routes to %q", res.GetName(), a.Append.GetHeader().GetKey(), cluster)
		}
		return "pod:" + a.Append.GetHeader().GetValue(), nil
	}
	return "", errors.New(res.GetName() + ": an unknown header mutation")
}

// resourceSize is a resource's share of a response's bytes on the wire
// (its length-delimited field in the DeltaDiscoveryResponse).
func resourceSize(r *discovery.Resource) int {
	n := proto.Size(r)
	return n + 1 + varintLen(uint64(n))
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
