package activator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// fakePod is a pod's server: its readiness path answers 503 until ready
// is set, and every other request is counted.
type fakePod struct {
	ip       netip.Addr
	srv      *httptest.Server
	ready    atomic.Bool
	probes   atomic.Int64 // GETs of /ready
	requests atomic.Int64 // everything else
}

// podNet maps fake pod addresses to fakePods: Dial reaches the pod an
// address names whatever the port, and refuses addresses of no pod.
type podNet struct {
	mu     sync.Mutex
	pods   map[netip.Addr]*fakePod
	onDial func(ip netip.Addr) // called before each dial; set under mu, called outside it
}

func newPodNet() *podNet { return &podNet{pods: map[netip.Addr]*fakePod{}} }

func (n *podNet) add(t *testing.T, ip string) *fakePod {
	t.Helper()
	p := &fakePod{ip: netip.MustParseAddr(ip)}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			p.requests.Add(1)
			return
		}
		p.probes.Add(1)
		if r.Header.Get("User-Agent") != probeUserAgent {
			t.Errorf("probe with User-Agent %q", r.Header.Get("User-Agent"))
		}
		if !p.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(p.srv.Close)
	n.mu.Lock()
	n.pods[p.ip] = p
	n.mu.Unlock()
	return p
}

func (n *podNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	hook := n.onDial
	n.mu.Unlock()
	if hook != nil {
		hook(ap.Addr())
	}
	n.mu.Lock()
	p := n.pods[ap.Addr()]
	n.mu.Unlock()
	if p == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, p.srv.Listener.Addr().String())
}

// httpReadiness is a readiness probe GET /ready on port 8888.
var httpReadiness = resolver.Readiness{Checks: [resolver.MaxReadinessChecks]resolver.Check{
	{Kind: resolver.CheckHTTP, Port: 8888, Path: "/ready", TimeoutSeconds: 1},
}}

func candidateOf(p *fakePod, name string, r resolver.Readiness) resolver.Candidate {
	return resolver.Candidate{Pod: name, PodIP: p.ip, Readiness: r}
}

// heldRequest is one Activate running in the background.
type heldRequest struct {
	done    chan struct{}
	res     resolver.Result
	release func()
	err     error
}

func hold(a *Activator, k resolver.Key, port uint16) *heldRequest {
	h := &heldRequest{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.res, h.release, h.err = a.Activate(context.Background(), k, port, resolver.Result{})
	}()
	return h
}

func (h *heldRequest) released() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// wait returns the result the request was released with; it fails the
// test unless the request was released without error.
func (h *heldRequest) wait(t *testing.T) resolver.Result {
	t.Helper()
	eventually(t, "the held request is released", h.released)
	if h.err != nil {
		t.Fatalf("held request failed: %v", h.err)
	}
	h.release()
	return h.res
}

func histogramCount(t *testing.T, a *Activator, p phase) uint64 {
	t.Helper()
	var m dto.Metric
	if err := a.metrics.wakePhase.WithLabelValues(phaseNames[p]).(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func fastPathActivator(t *testing.T, sb *fakeSandboxes, n *podNet, mod func(*Options)) *Activator {
	return newTestActivator(t, sb, &fakeWaker{}, func(o *Options) {
		o.Dial = n.dial
		if mod != nil {
			mod(o)
		}
	})
}

// TestFastPathReleasesOnProbe: a held request goes to a starting pod the
// moment its own readiness probe passes, not before, though the pod is
// not Ready; requests that come after it, still before Ready, go at once
// without probing again; Ready ends the episode.
func TestFastPathReleasesOnProbe(t *testing.T) {
	sb, n := newFakeSandboxes(), newPodNet()
	k := nameKey("ns", "a")
	pod := n.add(t, "10.0.0.1")
	sb.set(k, resolver.Result{State: resolver.StateStarting, UID: "u1"}, resolver.Lifecycle{})
	sb.setCandidate(k, candidateOf(pod, "a-1", httpReadiness))
	a := fastPathActivator(t, sb, n, nil)

	h := hold(a, k, 8888)
	eventually(t, "the pod is probed", func() bool { return pod.probes.Load() >= 3 })
	if h.released() {
		t.Fatal("released before the pod's readiness probe passed")
	}
	pod.ready.Store(true)
	res := h.wait(t)
	if res.State != resolver.StateRunning || res.PodIP != pod.ip || res.UID != "u1" {
		t.Fatalf("released with %+v", res)
	}
	if got := counterValue(t, a.metrics.releases.WithLabelValues(releaseOnProbe)); got != 1 {
		t.Fatalf("releases on probe = %v, want 1", got)
	}

	probes := pod.probes.Load()
	if res := hold(a, k, 8888).wait(t); res.PodIP != pod.ip {
		t.Fatalf("a later request released with %+v", res)
	}
	if got := pod.probes.Load(); got != probes {
		t.Fatalf("a later request probed the pod again (%d probes, %d before)", got, probes)
	}
	if a.episodeCount() != 1 {
		t.Fatal("the episode ended before Ready was seen")
	}
	sb.setState(k, resolver.StateRunning, pod.ip)
	eventually(t, "the episode ends at Ready", func() bool { return a.episodeCount() == 0 })
	if got := histogramCount(t, a, phaseReadySeen); got != 1 {
		t.Fatalf("ready_seen observed %d times", got)
	}
}

// TestFastPathOptOut: with release-on ready (the sandbox's annotation, or
// the router's flag) a starting pod is not probed, and its requests wait
// for Ready; the annotation wins over the flag both ways.
func TestFastPathOptOut(t *testing.T) {
	for _, tt := range []struct {
		name       string
		flag, anno resolver.Release
		fast       bool
	}{
		{"annotation ready", resolver.ReleaseDefault, resolver.ReleaseOnReady, false},
		{"flag ready", resolver.ReleaseOnReady, resolver.ReleaseDefault, false},
		{"flag ready, annotation probe", resolver.ReleaseOnReady, resolver.ReleaseOnProbe, true},
		{"flag probe, annotation ready", resolver.ReleaseOnProbe, resolver.ReleaseOnReady, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sb, n := newFakeSandboxes(), newPodNet()
			k := nameKey("ns", "a")
			pod := n.add(t, "10.0.0.1")
			pod.ready.Store(true)
			sb.set(k, resolver.Result{State: resolver.StateStarting}, resolver.Lifecycle{Release: tt.anno})
			sb.setCandidate(k, candidateOf(pod, "a-1", httpReadiness))
			a := fastPathActivator(t, sb, n, func(o *Options) { o.Policy.Release = tt.flag })
			h := hold(a, k, 8888)
			if tt.fast {
				h.wait(t)
				return
			}
			eventually(t, "the episode saw the pod's address", func() bool { return histogramCount(t, a, phaseAddressSeen) == 1 })
			if h.released() || pod.probes.Load() != 0 {
				t.Fatalf("released %v after %d probes with release-on ready", h.released(), pod.probes.Load())
			}
			sb.setState(k, resolver.StateRunning, pod.ip)
			if res := h.wait(t); res.PodIP != pod.ip {
				t.Fatalf("released with %+v", res)
			}
			if got := counterValue(t, a.metrics.releases.WithLabelValues(releaseOnReady)); got != 1 {
				t.Fatalf("releases on ready = %v, want 1", got)
			}
		})
	}
}

// TestFastPathEarlyTrust: a request that joins an episode released on a
// probe more than earlyTrust later is connected again first: a server
// that died since (same pod, same address) gets nothing.
func TestFastPathEarlyTrust(t *testing.T) {
	sb, n := newFakeSandboxes(), newPodNet()
	k := nameKey("ns", "a")
	pod := n.add(t, "10.0.0.1")
	pod.ready.Store(true)
	sb.set(k, resolver.Result{State: resolver.StateStarting}, resolver.Lifecycle{})
	sb.setCandidate(k, candidateOf(pod, "a-1", httpReadiness))
	a := fastPathActivator(t, sb, n, nil)
	hold(a, k, 8888).wait(t)
	released := time.Now()
	// A wait on the clock, not for luck: trust ends at a known time.
	eventually(t, "the release is no longer trusted", func() bool { return time.Since(released) > earlyTrust })
	var dials atomic.Int64
	n.mu.Lock()
	n.onDial = func(ip netip.Addr) {
		if ip == pod.ip {
			dials.Add(1)
		}
	}
	delete(n.pods, pod.ip) // the server died; the pod and its address stay
	n.mu.Unlock()
	h := hold(a, k, 8888)
	eventually(t, "the episode connects again, twice", func() bool { return dials.Load() >= 2 })
	if h.released() {
		t.Fatal("released to a server that is gone")
	}
	n.mu.Lock()
	n.pods[pod.ip] = pod // back
	n.mu.Unlock()
	if res := h.wait(t); res.PodIP != pod.ip {
		t.Fatalf("released with %+v", res)
	}
}

// TestFastPathWaitsForReady: a pod whose readiness the router cannot run
// (an exec probe), or whose address is loopback, is not probed; Ready
// releases its requests.
func TestFastPathWaitsForReady(t *testing.T) {
	t.Run("opaque", func(t *testing.T) { testWaitsForReady(t, "10.0.0.1", resolver.Readiness{Opaque: true}) })
	t.Run("loopback", func(t *testing.T) { testWaitsForReady(t, "127.0.0.2", httpReadiness) })
}

func testWaitsForReady(t *testing.T, ip string, r resolver.Readiness) {
	sb, n := newFakeSandboxes(), newPodNet()
	k := nameKey("ns", "a")
	pod := n.add(t, ip)
	pod.ready.Store(true)
	sb.set(k, resolver.Result{State: resolver.StateStarting}, resolver.Lifecycle{})
	sb.setCandidate(k, candidateOf(pod, "a-1", r))
	dials := atomic.Int64{}
	n.onDial = func(netip.Addr) { dials.Add(1) }
	a := fastPathActivator(t, sb, n, nil)
	h := hold(a, k, 8888)
	eventually(t, "the episode saw the pod's address", func() bool { return histogramCount(t, a, phaseAddressSeen) == 1 })
	if h.released() || dials.Load() != 0 {
		t.Fatalf("released %v after %d dials of the pod", h.released(), dials.Load())
	}
	sb.setState(k, resolver.StateRunning, pod.ip)
	h.wait(t)
}

// TestFastPathReplacedPod: a pod replaced while it was probed is probed no
// more and gets no request, even once its probe would pass; the
// replacement gets them.
func TestFastPathReplacedPod(t *testing.T) {
	sb, n := newFakeSandboxes(), newPodNet()
	k := nameKey("ns", "a")
	old, repl := n.add(t, "10.0.0.1"), n.add(t, "10.0.0.2")
	sb.set(k, resolver.Result{State: resolver.StateStarting}, resolver.Lifecycle{})
	sb.setCandidate(k, candidateOf(old, "a-1", httpReadiness))
	a := fastPathActivator(t, sb, n, nil)
	h := hold(a, k, 8888)
	eventually(t, "the first pod is probed", func() bool { return old.probes.Load() >= 1 })
	sb.setCandidate(k, candidateOf(repl, "a-2", httpReadiness))
	eventually(t, "the replacement is probed", func() bool { return repl.probes.Load() >= 1 })
	oldProbes := old.probes.Load()
	old.ready.Store(true)
	eventually(t, "the replacement is probed again", func() bool { return repl.probes.Load() >= 3 })
	if h.released() {
		t.Fatal("released while the current pod's probe fails")
	}
	if got := old.probes.Load(); got > oldProbes+1 {
		// One probe, in flight at the replacement, may reach the server
		// after the replacement's first; no other may start.
		t.Fatalf("the replaced pod was probed %d more times", got-oldProbes)
	}
	repl.ready.Store(true)
	if res := h.wait(t); res.PodIP != repl.ip {
		t.Fatalf("released to %v, want the replacement %v", res.PodIP, repl.ip)
	}
}

// TestFastPathCandidateGoneBeforeRelease: a pod that passes its probe but
// stops being the sandbox's pod before the release (here: during the
// connect to the requested port) gets nothing.
func TestFastPathCandidateGoneBeforeRelease(t *testing.T) {
	sb, n := newFakeSandboxes(), newPodNet()
	k := nameKey("ns", "a")
	old, repl := n.add(t, "10.0.0.1"), n.add(t, "10.0.0.2")
	repl.ready.Store(true)
	sb.set(k, resolver.Result{State: resolver.StateStarting}, resolver.Lifecycle{})
	sb.setCandidate(k, candidateOf(old, "a-1", resolver.Readiness{})) // no probe: a connect decides
	var swapped sync.Once
	n.onDial = func(ip netip.Addr) {
		if ip == old.ip {
			swapped.Do(func() { sb.setCandidate(k, candidateOf(repl, "a-2", httpReadiness)) })
		}
	}
	a := fastPathActivator(t, sb, n, nil)
	if res := hold(a, k, 8888).wait(t); res.PodIP != repl.ip {
		t.Fatalf("released to %v, want the replacement %v", res.PodIP, repl.ip)
	}
}

// TestFastPathSuspendedWhileLingering: after a release on a probe, a
// suspension withdraws it: the next request is held (and resumes the
// sandbox) instead of going to the pod that is going away.
func TestFastPathSuspendedWhileLingering(t *testing.T) {
	sb, n := newFakeSandboxes(), newPodNet()
	k := nameKey("ns", "a")
	first, second := n.add(t, "10.0.0.1"), n.add(t, "10.0.0.2")
	first.ready.Store(true)
	second.ready.Store(true)
	sb.set(k, resolver.Result{State: resolver.StateStarting}, resolver.Lifecycle{})
	sb.setCandidate(k, candidateOf(first, "a-1", httpReadiness))
	w := &fakeWaker{}
	a := newTestActivator(t, sb, w, func(o *Options) { o.Dial = n.dial })
	hold(a, k, 8888).wait(t)

	sb.setCandidate(k, resolver.Candidate{})
	sb.setState(k, resolver.StateSuspended, netip0)
	h := hold(a, k, 8888)
	eventually(t, "the sandbox is resumed", func() bool { return w.resumes.Load() == 1 })
	if h.released() {
		t.Fatal("a request after the suspension went to the old pod")
	}
	sb.setState(k, resolver.StateStarting, netip0)
	sb.setCandidate(k, candidateOf(second, "a-2", httpReadiness))
	if res := h.wait(t); res.PodIP != second.ip {
		t.Fatalf("released to %v, want %v", res.PodIP, second.ip)
	}
}

// TestWakeTimeline: one wake-up through every phase observes each phase
// once and logs them in one line at debug level.
func TestWakeTimeline(t *testing.T) {
	sb, n := newFakeSandboxes(), newPodNet()
	k := nameKey("ns", "a")
	pod := n.add(t, "10.0.0.1")
	pod.ready.Store(true)
	sb.set(k, resolver.Result{State: resolver.StateSuspended}, resolver.Lifecycle{})
	w := &fakeWaker{onResume: func(resolver.Key) error {
		go func() {
			sb.setState(k, resolver.StateStarting, netip0)
			sb.setCandidate(k, resolver.Candidate{Pod: "a-1", Readiness: httpReadiness})
			sb.setCandidate(k, candidateOf(pod, "a-1", httpReadiness))
		}()
		return nil
	}}
	var logs lockedBuffer
	a := newTestActivator(t, sb, w, func(o *Options) {
		o.Dial = n.dial
		o.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	h := hold(a, k, 8888)
	eventually(t, "released", h.released)
	if h.err != nil {
		t.Fatal(h.err)
	}
	h.release() // the response head
	sb.setState(k, resolver.StateRunning, pod.ip)
	eventually(t, "the episode ends", func() bool { return a.episodeCount() == 0 })
	for p := range numPhases {
		if got := histogramCount(t, a, p); got != 1 {
			t.Errorf("%s observed %d times, want 1", phaseNames[p], got)
		}
	}
	eventually(t, "the wake-up is logged", func() bool { return strings.Contains(logs.String(), "msg=wake-up") })
	line := logs.String()[strings.Index(logs.String(), "msg=wake-up"):]
	line = line[:strings.IndexByte(line, '\n')]
	for _, want := range append(phaseNames[:], "released_on=probe", "sandbox=a") {
		if !strings.Contains(line, want) {
			t.Errorf("wake-up line lacks %s: %s", want, line)
		}
	}
}

// TestProberChecks runs each kind of probe against real servers: TCP,
// HTTP (path, query and headers as the pod spec has them; 3xx a success
// that is not followed) and gRPC health (only SERVING passes).
func TestProberChecks(t *testing.T) {
	_, port := listen(t)
	p := newProber((&net.Dialer{}).DialContext, defaultProbeTimeout)
	ctx := context.Background()
	tcp := resolver.Readiness{Checks: [resolver.MaxReadinessChecks]resolver.Check{{Kind: resolver.CheckTCP, Port: port, TimeoutSeconds: 1}}}
	if err := p.ready(ctx, loopback, &tcp); err != nil {
		t.Fatalf("tcp probe of a listening port: %v", err)
	}
	tcp.Checks[0].Port = freePort(t)
	if err := p.ready(ctx, loopback, &tcp); err == nil {
		t.Fatal("tcp probe of a closed port passed")
	}
	var seen atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(fmt.Sprintf("%s %s %s %s", r.Host, r.URL.RequestURI(), r.Header.Get("X-Probe"), r.Header.Get("Accept")))
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "http://169.254.169.254/", http.StatusFound)
		case "/bad":
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	srvPort := uint16(srv.Listener.Addr().(*net.TCPAddr).Port)
	check := func(path string) error {
		r := resolver.Readiness{Checks: [resolver.MaxReadinessChecks]resolver.Check{{Kind: resolver.CheckHTTP, Port: srvPort, Path: path, TimeoutSeconds: 1, Header: "Host: app.local\nX-Probe: yes\n"}}}
		return p.ready(ctx, loopback, &r)
	}
	if err := check("/healthz?deep=1"); err != nil {
		t.Fatal(err)
	}
	if got := seen.Load(); got != "app.local /healthz?deep=1 yes */*" {
		t.Fatalf("probe arrived as %q", got)
	}
	if err := check("/moved"); err != nil {
		t.Fatalf("a redirect is a success, not followed: %v", err)
	}
	if err := check("/bad"); !errors.Is(err, errProbeStatus) {
		t.Fatalf("a 500 gave %v", err)
	}

	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs, hs := grpc.NewServer(), health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(gln)
	defer gs.Stop()
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_NOT_SERVING)
	grpcCheck := resolver.Readiness{Checks: [resolver.MaxReadinessChecks]resolver.Check{{Kind: resolver.CheckGRPC, Port: uint16(gln.Addr().(*net.TCPAddr).Port), Service: "app", TimeoutSeconds: 1}}}
	if err := p.ready(ctx, loopback, &grpcCheck); !errors.Is(err, errProbeStatus) {
		t.Fatalf("NOT_SERVING gave %v", err)
	}
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	if err := p.ready(ctx, loopback, &grpcCheck); err != nil {
		t.Fatalf("SERVING gave %v", err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
