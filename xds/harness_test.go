package xds

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// waitTimeout bounds every wait on a stream.
const waitTimeout = 10 * time.Second

// startServer runs a Server on 127.0.0.1 with opts (the resolver and
// domains filled in when empty) and returns its address.
func startServer(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	if opts.BaseDomains == nil {
		opts.BaseDomains = []string{"example.com"}
	}
	if opts.DefaultPort == 0 {
		opts.DefaultPort = 8888
	}
	if opts.RouterEndpoints == nil {
		opts.RouterEndpoints = []netip.AddrPort{netip.MustParseAddrPort("10.9.0.1:8080")}
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, lis.Addr().String()
}

// deltaClient is a raw delta-xDS client that speaks as Envoy does.
type deltaClient struct {
	t      *testing.T
	conn   *grpc.ClientConn
	stream grpc.BidiStreamingClient[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
	node   *core.Node
	first  bool
	cancel context.CancelFunc
	recv   chan *discovery.DeltaDiscoveryResponse
	errs   chan error
}

func envoyNode(id string) *core.Node {
	return &core.Node{Id: id, Cluster: "ingress", UserAgentName: "envoy"}
}

func dialDelta(t *testing.T, addr string, node *core.Node) *deltaClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &deltaClient{t: t, conn: conn, stream: st, node: node, first: true, cancel: cancel,
		recv: make(chan *discovery.DeltaDiscoveryResponse, 64), errs: make(chan error, 1)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				c.errs <- err
				close(c.recv)
				return
			}
			c.recv <- r
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *deltaClient) close() {
	c.cancel()
	c.conn.Close()
}

func (c *deltaClient) send(req *discovery.DeltaDiscoveryRequest) {
	c.t.Helper()
	if c.first {
		req.Node, c.first = c.node, false
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next waits for the next response.
func (c *deltaClient) next() *discovery.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.recv:
		if !ok {
			c.t.Fatalf("stream ended: %v", <-c.errs)
		}
		return r
	case <-time.After(waitTimeout):
		c.t.Fatal("no response")
	}
	return nil
}

// ack acknowledges r.
func (c *deltaClient) ack(r *discovery.DeltaDiscoveryResponse) {
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce})
}

// waitSubscriptions waits until the on-demand cache holds n names of
// typeURL: a request without an answer (an unsubscribe) has been applied.
func waitSubscriptions(t *testing.T, s *Server, typeURL string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		s.ondemand.mu.Lock()
		got := 0
		for _, e := range s.ondemand.entries[typeURL] {
			got += len(e.subs)
		}
		s.ondemand.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions to %s, want %d", got, typeURL, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitFor waits until cond holds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// sampleCount is how many acknowledged pushes of a change were timed.
func sampleCount(s *Server) uint64 {
	var m dto.Metric
	if err := s.metrics.pushSeconds.Write(&m); err != nil {
		panic(err)
	}
	return m.GetHistogram().GetSampleCount()
}
