package xds

import (
	"testing"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/status"

	"github.com/sandbox-router/sandbox-router/resolver"
)

const vh = resource.VirtualHostType

// flip changes a sandbox in the fake and has the cache take the change
// in synchronously, so that what a client is sent next is determined.
func flip(s *Server, r *fakeResolver, ns, name string, state resolver.State, ip string) {
	r.set(ns, name, state, ip)
	s.ondemand.changed([]resolver.Key{{Namespace: ns, Name: name}}, time.Now())
}

// names are the resource names of a response, with "-" before removals
// and "?" before not-found answers.
func names(r *discovery.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.Resources {
		if res.Resource == nil {
			out = append(out, "?"+res.Name)
		} else {
			out = append(out, res.Name+"@"+res.Version)
		}
	}
	for _, n := range r.RemovedResources {
		out = append(out, "-"+n)
	}
	return out
}

func wantNames(t *testing.T, r *discovery.DeltaDiscoveryResponse, want ...string) {
	t.Helper()
	got := names(r)
	if len(got) != len(want) {
		t.Fatalf("response %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("response %v, want %v", got, want)
		}
	}
}

// TestDeltaVHDS speaks the delta protocol as Envoy does for VHDS.
func TestDeltaVHDS(t *testing.T) {
	r := newFakeResolver()
	r.set("ns", "a", resolver.StateRunning, "10.0.0.1")
	r.set("ns", "b", resolver.StateSuspended, "")
	reg := prometheus.NewRegistry()
	s, addr := startServer(t, Options{Resolver: r, Metrics: NewMetrics(reg)})
	c := dialDelta(t, addr, envoyNode("envoy-1"))

	// Envoy's first VHDS request subscribes to the route configuration's
	// name; it is answered with nothing (no virtual host is pushed).
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{RouteConfigName}})
	first := c.next()
	wantNames(t, first, "-sandboxes/")
	c.ack(first)

	// On demand: a running sandbox goes to its pod, a suspended one to
	// the router fleet; a host that is no sandbox's to the router too.
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/a.ns.example.com"}})
	ra := c.next()
	wantNames(t, ra, "sandboxes/a.ns.example.com@10.0.0.1:8888")
	if al := ra.Resources[0].Aliases; len(al) != 1 || al[0] != "sandboxes/a.ns.example.com" {
		t.Fatalf("aliases %v", al)
	}
	var v route.VirtualHost
	if err := ra.Resources[0].Resource.UnmarshalTo(&v); err != nil || v.Domains[0] != "a.ns.example.com" {
		t.Fatalf("virtual host %v, %v", &v, err)
	}
	c.ack(ra)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/3000-b.ns.example.com:443", "sandboxes/router.example.org"}})
	wantNames(t, c.next(), "sandboxes/3000-b.ns.example.com:443@router", "sandboxes/router.example.org@router")

	// A change is pushed to the stream holding the name, once.
	flip(s, r, "ns", "b", resolver.StateRunning, "10.0.0.2")
	// (the previous response is not yet acknowledged: the push waits for
	// the watch the acknowledgement opens)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResponseNonce: "2"})
	push := c.next()
	wantNames(t, push, "sandboxes/3000-b.ns.example.com:443@10.0.0.2:3000")
	if al := push.Resources[0].Aliases; len(al) != 0 {
		t.Fatalf("a pushed change carries aliases %v: only answers to a subscribe need them", al)
	}
	c.ack(push)

	// An explicit subscribe to a name the client holds is answered anyway.
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/a.ns.example.com"}})
	again := c.next()
	wantNames(t, again, "sandboxes/a.ns.example.com@10.0.0.1:8888")
	c.ack(again)

	// Unsubscribed: a's changes are no longer sent. The probe subscribe
	// after the change is answered alone.
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesUnsubscribe: []string{"sandboxes/a.ns.example.com"}})
	waitSubscriptions(t, s, vh, 2)
	flip(s, r, "ns", "a", resolver.StateSuspended, "")
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/c.ns.example.com"}})
	probe := c.next()
	wantNames(t, probe, "sandboxes/c.ns.example.com@router")
	c.ack(probe)

	// A NACK: the rejected version is never sent again, to this stream or
	// this node's next one; an explicit subscribe to it is answered as
	// not found, so Envoy does not wait; a new version is sent.
	flip(s, r, "ns", "b", resolver.StateRunning, "10.0.0.3")
	bad := c.next()
	wantNames(t, bad, "sandboxes/3000-b.ns.example.com:443@10.0.0.3:3000")
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResponseNonce: bad.Nonce, ErrorDetail: &status.Status{Code: 3, Message: "rejected"}})
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/3000-b.ns.example.com:443"}})
	wantNames(t, c.next(), "?sandboxes/3000-b.ns.example.com:443")
	if n := testutil.ToFloat64(s.metrics.nacks.WithLabelValues(vh)); n != 1 {
		t.Fatalf("nacks = %v, want 1", n)
	}
	flip(s, r, "ns", "b", resolver.StateRunning, "10.0.0.4")
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResponseNonce: "x"})
	wantNames(t, c.next(), "sandboxes/3000-b.ns.example.com:443@10.0.0.4:3000")

	// Cold names are removed.
	s.ondemand.sweepCold(time.Now().Add(time.Hour), time.Time{})
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResponseNonce: "y"})
	cold := c.next()
	if len(cold.RemovedResources) != 3 || len(cold.Resources) != 0 {
		t.Fatalf("cold sweep sent %v", names(cold))
	}
	if n := testutil.ToFloat64(s.metrics.subscriptions.WithLabelValues(vh)); n != 0 {
		t.Fatalf("subscriptions after the sweep = %v", n)
	}
}

// TestDeltaReconnect: a client that reconnects with the versions it holds
// is sent only what changed meanwhile; a version its node rejected on the
// old stream is not sent on the new one.
func TestDeltaReconnect(t *testing.T) {
	r := newFakeResolver()
	r.set("ns", "a", resolver.StateRunning, "10.0.0.1")
	r.set("ns", "b", resolver.StateRunning, "10.0.0.2")
	r.set("ns", "c", resolver.StateRunning, "10.0.0.3")
	s, addr := startServer(t, Options{Resolver: r})
	c := dialDelta(t, addr, envoyNode("envoy-1"))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/a.ns.example.com", "sandboxes/b.ns.example.com", "sandboxes/c.ns.example.com"}})
	resp := c.next()
	held := map[string]string{}
	for _, res := range resp.Resources {
		held[res.Name] = res.Version
	}
	c.ack(resp)
	flip(s, r, "ns", "c", resolver.StateRunning, "10.0.0.9")
	bad := c.next()
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResponseNonce: bad.Nonce, ErrorDetail: &status.Status{Code: 3}})
	// The answer to a probe subscribe shows the NACK was read.
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/d.ns.example.com"}})
	c.next()
	c.close()

	flip(s, r, "ns", "b", resolver.StateSuspended, "")
	c2 := dialDelta(t, addr, envoyNode("envoy-1"))
	c2.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh,
		ResourceNamesSubscribe:  []string{"sandboxes/a.ns.example.com", "sandboxes/b.ns.example.com", "sandboxes/c.ns.example.com"},
		InitialResourceVersions: held})
	wantNames(t, c2.next(), "sandboxes/b.ns.example.com@router")
}

// TestFeedPushes: a change the resolver reports reaches a subscribed
// client through the feed, with no call from the test.
func TestFeedPushes(t *testing.T) {
	r := newFakeResolver()
	r.set("ns", "a", resolver.StateSuspended, "")
	_, addr := startServer(t, Options{Resolver: r})
	c := dialDelta(t, addr, envoyNode("envoy-1"))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/a.ns.example.com"}})
	c.ack(c.next())
	r.set("ns", "a", resolver.StateRunning, "10.0.0.1")
	wantNames(t, c.next(), "sandboxes/a.ns.example.com@10.0.0.1:8888")
}

// TestNamesPerStreamCap: past MaxNamesPerStream a subscribe is answered as
// not found and nothing is indexed for it.
func TestNamesPerStreamCap(t *testing.T) {
	r := newFakeResolver()
	s, addr := startServer(t, Options{Resolver: r, MaxNamesPerStream: 2})
	c := dialDelta(t, addr, envoyNode("envoy-1"))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/a.ns.example.com", "sandboxes/b.ns.example.com", "sandboxes/c.ns.example.com"}})
	wantNames(t, c.next(), "sandboxes/a.ns.example.com@router", "sandboxes/b.ns.example.com@router", "?sandboxes/c.ns.example.com")
	waitSubscriptions(t, s, vh, 2)
}

// TestClosedStreamsLeaveNothing: once its streams close, the cache holds
// no stream, no pending request and no entry.
func TestClosedStreamsLeaveNothing(t *testing.T) {
	r := newFakeResolver()
	r.set("ns", "a", resolver.StateRunning, "10.0.0.1")
	s, addr := startServer(t, Options{Resolver: r})
	for i := range 3 {
		c := dialDelta(t, addr, envoyNode("envoy-1"))
		c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/a.ns.example.com", "sandboxes/b.ns.example.com"}})
		c.ack(c.next())
		if i == 0 {
			// A stale acknowledgement: answered by nothing.
			c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResponseNonce: "stale"})
		}
		c.close()
	}
	waitFor(t, func() bool {
		s.ondemand.mu.Lock()
		defer s.ondemand.mu.Unlock()
		return len(s.ondemand.streams) == 0 && len(s.ondemand.pending) == 0 && len(s.ondemand.pendingOf) == 0 &&
			len(s.ondemand.entries[vh]) == 0 && len(s.ondemand.byKey) == 0
	})
}

// TestLegacyWildcard: a first VHDS request naming nothing (the legacy
// wildcard) is answered with nothing, not with every virtual host.
func TestLegacyWildcard(t *testing.T) {
	r := newFakeResolver()
	r.set("ns", "a", resolver.StateRunning, "10.0.0.1")
	_, addr := startServer(t, Options{Resolver: r})
	c := dialDelta(t, addr, envoyNode("envoy-1"))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh})
	wantNames(t, c.next(), "-sandboxes/")
}

// TestColdThenAskedAgain: a name that went cold and is asked for again
// before the removal was sent is answered, not removed.
func TestColdThenAskedAgain(t *testing.T) {
	r := newFakeResolver()
	r.set("ns", "a", resolver.StateRunning, "10.0.0.1")
	s, addr := startServer(t, Options{Resolver: r})
	c := dialDelta(t, addr, envoyNode("envoy-1"))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/a.ns.example.com", "sandboxes/b.ns.example.com"}})
	first := c.next()
	// Not acknowledged yet: the sweep's removals wait for the next watch.
	s.ondemand.sweepCold(time.Now().Add(time.Hour), time.Time{})
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: vh, ResponseNonce: first.Nonce, ResourceNamesSubscribe: []string{"sandboxes/a.ns.example.com"}})
	wantNames(t, c.next(), "sandboxes/a.ns.example.com@10.0.0.1:8888", "-sandboxes/b.ns.example.com")
}
