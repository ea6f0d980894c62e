package activator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// probeUserAgent names the router's probes in the pod's logs, apart from
// the kubelet's (kube-probe/<version>).
const probeUserAgent = "sandbox-router-probe"

// maxProbeBody is how much of a probe's response body is read (and
// discarded) before the connection is closed, as much as the kubelet
// reads.
const maxProbeBody = 10 << 10

// prober runs readiness probes against pods from the router: the pod's
// own probes, before the kubelet has run them, and a connect to each port
// requests wait for.
type prober struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	timeout time.Duration // one connect
	client  *http.Client
}

func newProber(dial func(context.Context, string, string) (net.Conn, error), timeout time.Duration) *prober {
	p := &prober{dial: dial, timeout: timeout}
	p.client = &http.Client{
		Transport: &http.Transport{
			// The request's host is always the pod's address (built
			// below, never from the spec), and no proxy is consulted.
			DialContext: dial,
			// Each probe stands alone, like the kubelet's: a kept
			// connection would hide a server that stopped accepting.
			DisableKeepAlives: true,
			// As the kubelet: an HTTPS probe checks that the server
			// answers, not who it is; nothing but the probe is sent.
			TLSClientConfig:        &tls.Config{InsecureSkipVerify: true},
			MaxResponseHeaderBytes: 16 << 10,
		},
		// A redirect is an answer (3xx counts as success); following it
		// could lead anywhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p
}

// connect checks that the pod accepts TCP connections on port. A Ready
// condition is the kubelet's view, written after its own probe; the first
// requests after a resume must not find the port still closed (that was a
// stream of 502s elsewhere), so the activator connects itself before it
// releases them. The connection is closed at once, unused.
func (p *prober) connect(ctx context.Context, ip netip.Addr, port uint16) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	c, err := p.dial(ctx, "tcp", netip.AddrPortFrom(ip, port).String())
	if err != nil {
		return err
	}
	return c.Close()
}

// ready runs every check of the pod's readiness against ip, in order, and
// returns the first failure.
func (p *prober) ready(ctx context.Context, ip netip.Addr, r *resolver.Readiness) error {
	for i := range r.Checks {
		c := &r.Checks[i]
		if c.Kind == resolver.CheckNone {
			continue
		}
		if err := p.check(ctx, ip, c); err != nil {
			return fmt.Errorf("%s probe on port %d: %w", c.Kind, c.Port, err)
		}
	}
	return nil
}

func (p *prober) check(ctx context.Context, ip netip.Addr, c *resolver.Check) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout())
	defer cancel()
	switch c.Kind {
	case resolver.CheckTCP:
		return p.connect(ctx, ip, c.Port)
	case resolver.CheckHTTP, resolver.CheckHTTPS:
		return p.get(ctx, ip, c)
	case resolver.CheckGRPC:
		// A closed port is the common failure while a pod starts: find
		// it with a connect before building a gRPC client.
		if err := p.connect(ctx, ip, c.Port); err != nil {
			return err
		}
		return p.grpcHealth(ctx, ip, c)
	}
	return fmt.Errorf("unknown probe kind %v", c.Kind)
}

var errProbeStatus = errors.New("probe answered with a failure status")

// get runs an HTTP GET probe: 200-399 is success, as for the kubelet.
func (p *prober) get(ctx context.Context, ip netip.Addr, c *resolver.Check) error {
	scheme := "http"
	if c.Kind == resolver.CheckHTTPS {
		scheme = "https"
	}
	// The path was checked to hold neither scheme nor host (resolver/kube).
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+netip.AddrPortFrom(ip, c.Port).String()+c.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", probeUserAgent)
	req.Header.Set("Accept", "*/*")
	for line := range strings.Lines(c.Header) {
		name, value, _ := strings.Cut(strings.TrimSuffix(line, "\n"), ": ")
		if strings.EqualFold(name, "Host") {
			req.Host = value
			continue
		}
		req.Header.Set(name, value)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("%w %d", errProbeStatus, resp.StatusCode)
	}
	return nil
}

// grpcHealth asks the standard gRPC health service; SERVING is success.
func (p *prober) grpcHealth(ctx context.Context, ip netip.Addr, c *resolver.Check) error {
	conn, err := grpc.NewClient("passthrough:///"+netip.AddrPortFrom(ip, c.Port).String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(probeUserAgent),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return p.dial(ctx, "tcp", addr) }))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: c.Service})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%w %s", errProbeStatus, resp.GetStatus())
	}
	return nil
}
