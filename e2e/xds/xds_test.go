package xds

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"google.golang.org/grpc"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/demo/xdsprobe"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
	"github.com/sandbox-router/sandbox-router/resolver/kube"
)

const (
	waitTimeout = 60 * time.Second
	// grpcPort is served by each sim pod's grpc-go server (health service).
	grpcPort   uint16 = 9001
	baseDomain        = "sandboxes.test"
)

// ipBase keeps this package's pod addresses apart from other e2e packages'.
var ipBase = netip.MustParseAddr("127.6.0.1")

var sandboxGVR = schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}

func TestMain(m *testing.M) {
	code := m.Run()
	routerproc.RemoveShared()
	os.Exit(code)
}

// hostAddr is a non-loopback address of this machine: an EndpointSlice
// may not list a loopback address, so the router fleet is published at it.
func hostAddr(t *testing.T) netip.Addr {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
			return p.Addr()
		}
	}
	t.Fatal("this machine has no non-loopback IPv4 address to publish the router at")
	return netip.Addr{}
}

// TestProxylessGRPCOnTheAPIServer: grpc-go's xDS client reaches a running
// sandbox's pod directly; once the sandbox is suspended its next RPC goes
// to the router, which holds it, resumes the sandbox and answers; after
// the pod moves, RPCs reach the new pod.
func TestProxylessGRPCOnTheAPIServer(t *testing.T) {
	c := cluster.Start(t)
	ctx := t.Context()
	if err := c.ApplyCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.GrantRouter(ctx); err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(c.AdminConfig())
	cs := kubernetes.NewForConfigOrDie(c.AdminConfig())
	s, err := sim.New(sim.Options{
		Config: c.AdminConfig(), Namespaces: []string{metav1.NamespaceDefault},
		StartDelay: 200 * time.Millisecond,
		Ports:      []uint16{sim.DefaultPort, grpcPort},
		PortNames:  map[uint16]string{grpcPort: "grpc"},
		GRPCPorts:  []uint16{grpcPort},
		IPBase:     ipBase, Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}

	// The router, serving xDS, with the fleet from its Service's slices.
	bin, err := routerproc.Shared()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "router.kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, c.RouterToken); err != nil {
		t.Fatal(err)
	}
	host := hostAddr(t)
	p, err := routerproc.Start(ctx, routerproc.Options{Bin: bin, LogPath: filepath.Join(t.TempDir(), "router.log"), Args: []string{
		"--kubeconfig", kubeconfig, "--access-log", "off", "--leader-election=false", "--allow-loopback-pod-ip",
		"--listen-http", net.JoinHostPort(host.String(), "0"), "--base-domain", baseDomain,
		"--xds-listen", "127.0.0.1:0", "--xds-router-service", cluster.RouterNamespace + "/sandbox-router",
		"--xds-activity-interval", "1s", "--activity-tick", "200ms",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("router exit: %v", err)
		}
		if t.Failed() {
			t.Logf("router log:\n%s", p.Log())
		}
	})
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	routerAddr := netip.MustParseAddrPort(p.HTTPAddr)
	publishRouter(t, cs, routerAddr)
	waitLog(t, p, `"msg":"router endpoints"`, `"count":1`)

	createSandbox(t, dyn, "grpc-1", nil)
	pod1 := waitPod(t, s, "grpc-1", netip.Addr{})
	conn := xdsConn(t, p.XDSAddr, fmt.Sprintf("%d-grpc-1.default.%s", grpcPort, baseDomain))
	if got := check(t, conn); got != netip.AddrPortFrom(pod1, grpcPort) {
		t.Fatalf("running: answered by %s, want the pod %s", got, pod1)
	}

	// Suspended: the next RPC goes to the router, which resumes.
	acked := pushesAcked(t, p)
	setMode(t, dyn, "grpc-1", "Suspended")
	waitNoPod(t, s, "grpc-1")
	waitPushesAcked(t, p, acked+1)
	setModeOnResume := pushesAcked(t, p)
	if got := check(t, conn); got != routerAddr {
		t.Fatalf("suspended: answered by %s, want the router %s", got, routerAddr)
	}
	pod2 := waitPod(t, s, "grpc-1", pod1)
	waitPushesAcked(t, p, setModeOnResume+1)
	converge(t, conn, netip.AddrPortFrom(pod2, grpcPort), routerAddr)

	// Moved: the pod dies and a new one takes over at a new address.
	acked = pushesAcked(t, p)
	if err := s.RestartPod(ctx, metav1.NamespaceDefault, "grpc-1"); err != nil {
		t.Fatal(err)
	}
	pod3 := waitPod(t, s, "grpc-1", pod2)
	waitPushesAcked(t, p, acked+1)
	converge(t, conn, netip.AddrPortFrom(pod3, grpcPort), routerAddr)

	// Direct RPCs pass no router, yet they keep a sandbox with an idle
	// timeout running: the client's load reports mark it busy. Once they
	// stop, it is suspended.
	createSandbox(t, dyn, "grpc-idle", map[string]string{kube.IdleTimeoutAnnotation: idleTimeout.String()})
	idlePod := netip.AddrPortFrom(waitPod(t, s, "grpc-idle", netip.Addr{}), grpcPort)
	idleConn := xdsConn(t, p.XDSAddr, fmt.Sprintf("%d-grpc-idle.default.%s", grpcPort, baseDomain))
	converge(t, idleConn, idlePod, routerAddr)
	for end := time.Now().Add(3 * idleTimeout); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if got := check(t, idleConn); got != idlePod {
			t.Fatalf("during direct traffic: answered by %s, not the pod %s: the sandbox was suspended as idle (load reports counted: %v)", got, idlePod, metricValue(t, p, `sandbox_router_xds_activity_reports_total{source="load_report"}`))
		}
	}
	if n := metricValue(t, p, `sandbox_router_xds_activity_reports_total{source="load_report"}`); n == 0 {
		t.Fatal("no load report marked a sandbox busy")
	}
	waitNoPod(t, s, "grpc-idle")
}

// idleTimeout is grpc-idle's: short, so that the test is.
const idleTimeout = 3 * time.Second

// converge checks that the RPCs after an update are answered by the new
// pod or by the router (which proxies to the new pod: grpc-go applies an
// update it acknowledged a moment later, on its own goroutines), none
// fails and none reaches an old pod, until the new pod answers directly.
func converge(t *testing.T, conn *grpc.ClientConn, pod, router netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		got := check(t, conn)
		if got == pod {
			return
		}
		if got != router {
			t.Fatalf("answered by %s, want the new pod %s or the router %s", got, pod, router)
		}
		if time.Now().After(deadline) {
			t.Fatalf("RPCs never reached the new pod %s directly", pod)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// xdsConn is a channel to xds:///target through grpc-go's own xDS
// client, bootstrapped to the router's xDS server at xdsAddr.
func xdsConn(t *testing.T, xdsAddr, target string) *grpc.ClientConn {
	t.Helper()
	conn, err := xdsprobe.Dial(xdsAddr, target, "e2e-grpc-client")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// check sends one health RPC, waiting for a ready connection, and returns
// the address that answered it.
func check(t *testing.T, conn *grpc.ClientConn) netip.AddrPort {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	_, from, err := xdsprobe.Check(ctx, conn)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return from
}

// publishRouter writes the EndpointSlice the router's Service would have.
func publishRouter(t *testing.T, cs kubernetes.Interface, addr netip.AddrPort) {
	t.Helper()
	name, port, ready := "http", int32(addr.Port()), true
	proto := corev1.ProtocolTCP
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "sandbox-router-e2e", Namespace: cluster.RouterNamespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: "sandbox-router"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr.Addr().String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(cluster.RouterNamespace).Create(t.Context(), slice, metav1.CreateOptions{}); err != nil {
		t.Fatalf("endpoint slice: %v", err)
	}
}

func createSandbox(t *testing.T, dyn dynamic.Interface, name string, annotations map[string]string) {
	t.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": sim.Group + "/v1beta1", "kind": "Sandbox",
		"metadata": map[string]any{"name": name, "namespace": metav1.NamespaceDefault},
		"spec":     map[string]any{"operatingMode": "Running"},
	}}
	obj.SetAnnotations(annotations)
	if _, err := dyn.Resource(sandboxGVR).Namespace(metav1.NamespaceDefault).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func setMode(t *testing.T, dyn dynamic.Interface, name, mode string) {
	t.Helper()
	patch := `{"spec":{"operatingMode":"` + mode + `"}}`
	if _, err := dyn.Resource(sandboxGVR).Namespace(metav1.NamespaceDefault).Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitPod waits for a Ready pod of the sandbox at an address other than not.
func waitPod(t *testing.T, s *sim.Sim, name string, not netip.Addr) netip.Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	info, err := s.WaitPod(ctx, metav1.NamespaceDefault, name, func(p sim.PodInfo) bool { return p.Ready && p.IP != not })
	if err != nil {
		t.Fatal(err)
	}
	return info.IP
}

func waitNoPod(t *testing.T, s *sim.Sim, name string) {
	t.Helper()
	waitFor(t, "the pod to go", func() bool {
		_, _, ok := s.Pod(metav1.NamespaceDefault, name)
		return !ok
	})
}

// waitLog waits for a router log line holding every one of parts.
func waitLog(t *testing.T, p *routerproc.Proc, parts ...string) {
	t.Helper()
	waitFor(t, strings.Join(parts, " "), func() bool {
		for _, line := range strings.Split(p.Log(), "\n") {
			all := true
			for _, part := range parts {
				all = all && strings.Contains(line, part)
			}
			if all {
				return true
			}
		}
		return false
	})
}

// pushesAcked is how many pushes of a resolver change xDS clients have
// acknowledged, from the router's metrics.
func pushesAcked(t *testing.T, p *routerproc.Proc) int {
	t.Helper()
	return int(metricValue(t, p, "sandbox_router_xds_push_seconds_count"))
}

// metricValue reads one series of the router's metrics (0 when absent).
func metricValue(t *testing.T, p *routerproc.Proc, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return n
		}
	}
	return 0
}

func waitPushesAcked(t *testing.T, p *routerproc.Proc, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d acknowledged pushes", n), func() bool { return pushesAcked(t, p) >= n })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
