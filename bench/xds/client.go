package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/sandbox-router/sandbox-router/xds"
)

// How a client subscribes.
const (
	// modeVHDS speaks as Envoy's VHDS does: it subscribes to the route
	// configuration's name first, waits for the (empty) answer, then
	// subscribes to its hosts' virtual hosts by name.
	modeVHDS = "vhds"
	// modeNamed subscribes to its names in its first request (a cache that
	// knows nothing of VHDS would never answer the route configuration's
	// name).
	modeNamed = "named"
	// modeWildcard subscribes to everything ("*").
	modeWildcard = "wildcard"
)

// maxMessage lets a client receive a wildcard answer of every virtual host
// (grpc-go refuses more than 4 MiB by default).
const maxMessage = 1 << 30

type clientOptions struct {
	addr   string
	nodeID string
	mode   string
	names  []string // what it subscribes to (vhds and named)
	// want is how many resources complete its initial fetch.
	want int
	// owns tells the sandboxes it holds from those it does not: the bytes
	// it receives are counted on either side.
	owns func(i int) bool
	// recording, while true, makes it read every virtual host it receives
	// and remember what it carried and when it was acknowledged.
	recording *atomic.Bool
}

// delivery is one virtual host a client received and acknowledged.
type delivery struct {
	sig string
	ack int64 // CLOCK_MONOTONIC ns, just after the ACK was sent
}

// client is a raw delta-xDS client (DeltaAggregatedResources) for virtual
// hosts. It acknowledges every response with its nonce.
type client struct {
	opts    clientOptions
	conn    *grpc.ClientConn
	cancel  context.CancelFunc
	stream  grpc.BidiStreamingClient[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
	started int64

	sendMu   sync.Mutex
	nodeSent bool

	synced   chan struct{} // closed once want resources arrived
	syncedAt int64
	done     chan struct{} // closed when the stream ended
	err      error

	bytes     atomic.Int64 // every response, proto.Size
	responses atomic.Int64

	mu          sync.Mutex // what it recorded
	seen        map[int][]delivery
	ownedBytes  int64
	otherBytes  int64
	otherCount  int64 // virtual hosts of sandboxes it does not hold
	recordedErr error
}

// dial opens the client's connection and stream and sends its first
// request; the rest happens on its own goroutine.
func dial(ctx context.Context, o clientOptions) (*client, error) {
	first := &discovery.DeltaDiscoveryRequest{TypeUrl: resource.VirtualHostType}
	switch o.mode {
	case modeVHDS:
		first.ResourceNamesSubscribe = []string{xds.RouteConfigName}
	case modeNamed:
		first.ResourceNamesSubscribe = o.names
	case modeWildcard:
		first.ResourceNamesSubscribe = []string{"*"}
	default:
		return nil, fmt.Errorf("unknown client mode %q", o.mode)
	}
	c := &client{opts: o, started: mono(), synced: make(chan struct{}), done: make(chan struct{}), seen: map[int][]delivery{}}
	conn, err := grpc.NewClient(o.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage)))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	c.conn, c.cancel, c.stream = conn, cancel, st
	go c.loop()
	if err := c.send(first); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *client) send(req *discovery.DeltaDiscoveryRequest) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if !c.nodeSent {
		req.Node = &core.Node{Id: c.opts.nodeID, Cluster: "bench", UserAgentName: "envoy"}
		c.nodeSent = true
	}
	return c.stream.Send(req)
}

func (c *client) ack(resp *discovery.DeltaDiscoveryResponse) error {
	return c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
}

// item is one virtual host of a response, read while recording.
type item struct {
	i    int
	sig  string
	size int
}

func (c *client) loop() {
	defer close(c.done)
	awaitingNamespace := c.opts.mode == modeVHDS
	got := 0
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			c.err = err
			return
		}
		size := proto.Size(resp)
		c.bytes.Add(int64(size))
		c.responses.Add(1)
		if awaitingNamespace {
			// The answer to the route configuration's name: acknowledge
			// it, then ask for the hosts.
			awaitingNamespace = false
			if err := c.ack(resp); err != nil {
				c.err = err
				return
			}
			if err := c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.VirtualHostType, ResourceNamesSubscribe: c.opts.names}); err != nil {
				c.err = err
				return
			}
			continue
		}
		recording := c.opts.recording != nil && c.opts.recording.Load()
		var items []item
		var readErr error
		if recording {
			// Read what it carries before acknowledging it, as a proxy
			// applies a configuration before it ACKs.
			items = make([]item, 0, len(resp.GetResources()))
			for _, r := range resp.GetResources() {
				sig, err := readSignature(r)
				if err != nil && readErr == nil {
					readErr = err
				}
				items = append(items, item{i: indexOfName(r.GetName()), sig: sig, size: resourceSize(r)})
			}
		}
		if err := c.ack(resp); err != nil {
			c.err = err
			return
		}
		t := mono()
		got += len(resp.GetResources())
		if c.syncedAt == 0 && got >= c.opts.want {
			c.syncedAt = t
			close(c.synced)
		}
		if recording {
			c.record(items, size, t, readErr)
		}
	}
}

// record counts a response's bytes on the side of the sandboxes it holds
// or of the others (the envelope goes with the first), and remembers what
// each virtual host carried.
func (c *client) record(items []item, size int, t int64, readErr error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if readErr != nil && c.recordedErr == nil {
		c.recordedErr = readErr
	}
	envelope, owned := size, false
	for _, it := range items {
		envelope -= it.size
		if it.i >= 0 && c.opts.owns(it.i) {
			c.ownedBytes += int64(it.size)
			owned = true
		} else {
			c.otherBytes += int64(it.size)
			c.otherCount++
		}
		if it.i >= 0 {
			c.seen[it.i] = append(c.seen[it.i], delivery{sig: it.sig, ack: t})
		}
	}
	if owned || len(items) == 0 {
		c.ownedBytes += int64(envelope)
	} else {
		c.otherBytes += int64(envelope)
	}
}

// delivered is when the client acknowledged a response that carried
// sandbox i routed to sig.
func (c *client) delivered(i int, sig string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.seen[i] {
		if d.sig == sig {
			return d.ack, true
		}
	}
	return 0, false
}

// failed is the error that ended the stream, if it ended.
func (c *client) failed() error {
	select {
	case <-c.done:
		if c.err == nil {
			return errors.New("stream ended")
		}
		return c.err
	default:
		return nil
	}
}

func (c *client) close() {
	c.cancel()
	c.conn.Close()
	<-c.done
}
