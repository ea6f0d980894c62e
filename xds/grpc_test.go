package xds

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	xdsgrpc "google.golang.org/grpc/xds"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// healthServer is a gRPC server with the health service on addr.
func healthServer(t *testing.T, addr string) (*grpc.Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, health.NewServer())
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return g, lis.Addr().String()
}

// xdsConn dials target through grpc-go's own xDS client, bootstrapped to
// the server at xdsAddr.
func xdsConn(t *testing.T, xdsAddr, target string) *grpc.ClientConn {
	t.Helper()
	bootstrap := fmt.Sprintf(`{"xds_servers":[{"server_uri":%q,"channel_creds":[{"type":"insecure"}],"server_features":["xds_v3"]}],"node":{"id":"grpc-client-1"}}`, xdsAddr)
	rb, err := xdsgrpc.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// check sends one health RPC (waiting for a ready connection) and
// returns the address that answered it.
func check(t *testing.T, conn *grpc.ClientConn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true)); err != nil {
		t.Fatalf("Check: %v", err)
	}
	return p.Addr.String()
}

// waitAcked waits until n pushes of a change have been acknowledged.
func waitAcked(t *testing.T, s *Server, n uint64) {
	t.Helper()
	waitFor(t, func() bool { return sampleCount(s) >= n })
}

// TestProxylessGRPC: grpc-go's xDS client reaches a running sandbox's pod
// directly, the router fleet while it is suspended, and the new pod after
// it moves. (e2e/xds does the same on the real API server with the real
// router holding and resuming.)
func TestProxylessGRPC(t *testing.T) {
	pod1, pod1Addr := healthServer(t, "127.0.0.1:0")
	port := netip.MustParseAddrPort(pod1Addr).Port()
	_, routerAddr := healthServer(t, "127.0.0.1:0")
	r := newFakeResolver()
	r.set("ns", "a", resolver.StateRunning, "127.0.0.1")
	s, addr := startServer(t, Options{Resolver: r, RouterEndpoints: []netip.AddrPort{netip.MustParseAddrPort(routerAddr)}, AllowLoopbackPodIP: true})
	conn := xdsConn(t, addr, fmt.Sprintf("%d-a.ns.example.com", port))

	if got := check(t, conn); got != pod1Addr {
		t.Fatalf("running: answered by %s, want the pod %s", got, pod1Addr)
	}
	pod1.Stop()
	flip(s, r, "ns", "a", resolver.StateSuspended, "")
	waitAcked(t, s, 1)
	if got := check(t, conn); got != routerAddr {
		t.Fatalf("suspended: answered by %s, want the router %s", got, routerAddr)
	}
	_, pod2Addr := healthServer(t, fmt.Sprintf("127.0.0.2:%d", port))
	flip(s, r, "ns", "a", resolver.StateRunning, "127.0.0.2")
	waitAcked(t, s, 2)
	// grpc-go applies an update it acknowledged a moment later, on its
	// own goroutines: until then an RPC may still go to the router (which
	// would proxy it to the new pod), never to the old pod, and none fails.
	waitFor(t, func() bool {
		got := check(t, conn)
		if got != pod2Addr && got != routerAddr {
			t.Fatalf("moved: answered by %s, want the new pod %s or the router", got, pod2Addr)
		}
		return got == pod2Addr
	})
}
