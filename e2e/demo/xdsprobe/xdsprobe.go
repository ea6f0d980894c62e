package xdsprobe

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	xdsgrpc "google.golang.org/grpc/xds"
)

// Bootstrap is grpc-go's xDS bootstrap for one plaintext xDS server at
// addr (host:port), the client identifying itself as node.
func Bootstrap(addr, node string) []byte {
	type server struct {
		URI      string           `json:"server_uri"`
		Creds    []map[string]any `json:"channel_creds"`
		Features []string         `json:"server_features"`
	}
	b, _ := json.Marshal(map[string]any{
		"xds_servers": []server{{URI: addr, Creds: []map[string]any{{"type": "insecure"}}, Features: []string{"xds_v3"}}},
		"node":        map[string]any{"id": node},
	})
	return b
}

// Dial returns a channel to xds:///target (an "xds:///" prefix on target
// is accepted) whose xDS client asks the server at xdsAddr. It connects
// lazily, at the first RPC.
func Dial(xdsAddr, target, node string) (*grpc.ClientConn, error) {
	rb, err := xdsgrpc.NewXDSResolverWithConfigForTesting(Bootstrap(xdsAddr, node))
	if err != nil {
		return nil, fmt.Errorf("xds bootstrap: %w", err)
	}
	target = "xds:///" + strings.TrimPrefix(target, "xds:///")
	return grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
}

// Check sends one health Check for the server as a whole (service ""),
// waiting until the channel has a ready connection or ctx ends, and
// returns the status and the address that answered.
func Check(ctx context.Context, conn *grpc.ClientConn) (healthpb.HealthCheckResponse_ServingStatus, netip.AddrPort, error) {
	var p peer.Peer
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if p.Addr == nil {
		return resp.GetStatus(), netip.AddrPort{}, fmt.Errorf("no peer address")
	}
	from, err := netip.ParseAddrPort(p.Addr.String())
	if err != nil {
		return resp.GetStatus(), netip.AddrPort{}, fmt.Errorf("peer address %q: %w", p.Addr, err)
	}
	return resp.GetStatus(), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
}

// Answer is how the client prints an answer (the demo shows it too).
func Answer(status healthpb.HealthCheckResponse_ServingStatus, from netip.AddrPort) string {
	return status.String() + " from " + from.String()
}
