package sim

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestKubeletOptions: defaults, refusals, and the probe in the pod spec.
func TestKubeletOptions(t *testing.T) {
	ports := []uint16{8888, 9000}
	for _, tc := range []struct {
		name       string
		k          Kubelet
		grpcPorts  []uint16
		wantErr    bool
		wantPeriod int32
	}{
		{name: "defaults", wantPeriod: 10},
		{name: "sub-second period rounds up", k: Kubelet{ProbePeriod: 100 * time.Millisecond}, wantPeriod: 1},
		{name: "whole seconds", k: Kubelet{ProbePeriod: 3 * time.Second}, wantPeriod: 3},
		{name: "just over a second", k: Kubelet{ProbePeriod: time.Second + time.Millisecond}, wantPeriod: 2},
		{name: "tcp", k: Kubelet{Probe: ProbeTCP}, grpcPorts: []uint16{8888}, wantPeriod: 10},
		{name: "exec", k: Kubelet{Probe: ProbeExec, ProbePeriod: time.Nanosecond}, wantPeriod: 1},
		{name: "unknown probe", k: Kubelet{Probe: "grpc"}, wantErr: true},
		{name: "negative delay", k: Kubelet{ListenDelay: -time.Second}, wantErr: true},
		{name: "http probe on a grpc-go port", grpcPorts: []uint16{8888}, wantErr: true},
		{name: "exec probe on a grpc-go port", k: Kubelet{Probe: ProbeExec}, grpcPorts: []uint16{8888}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := tc.k.withDefaults(ports, tc.grpcPorts)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("withDefaults(%+v) = %+v, want an error", tc.k, k)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := k.probeSpec("web", 8888)
			if p.PeriodSeconds != tc.wantPeriod || p.TimeoutSeconds != 1 {
				t.Errorf("periodSeconds %d timeoutSeconds %d, want %d and 1", p.PeriodSeconds, p.TimeoutSeconds, tc.wantPeriod)
			}
			switch k.Probe {
			case ProbeHTTP:
				if p.HTTPGet == nil || p.HTTPGet.Path != ReadinessPath || p.HTTPGet.Port != intstr.FromString("web") || p.TCPSocket != nil || p.Exec != nil {
					t.Errorf("HTTP probe = %s", p)
				}
			case ProbeTCP:
				if p.TCPSocket == nil || p.TCPSocket.Port != intstr.FromInt32(8888) || p.HTTPGet != nil || p.Exec != nil {
					t.Errorf("TCP probe = %s", p)
				}
			case ProbeExec:
				if p.Exec == nil || len(p.Exec.Command) != 2 || p.HTTPGet != nil || p.TCPSocket != nil {
					t.Errorf("exec probe = %s", p)
				}
			}
		})
	}
}

// TestBackendStart: a bound backend refuses until it listens; its
// readiness path answers 503 until initialised (Initialise before
// listening counts from listening); it counts what it gets; a stopped
// backend neither listens nor is initialised.
func TestBackendStart(t *testing.T) {
	ip := netip.MustParseAddr("127.0.15.2")
	b, err := bindBackend(ip, []uint16{8888}, nil, "ns", "pod", "sb", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer b.stop()
	b.manualInit = true
	url := "http://" + netip.AddrPortFrom(ip, 8888).String()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := http.Get(url + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("a bound backend answered")
	}
	if err := b.listen(); err != nil {
		t.Fatal(err)
	}
	status := func(path, userAgent string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("User-Agent", userAgent)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(ReadinessPath, "kube-probe/1.37"); got != http.StatusServiceUnavailable {
		t.Errorf("readiness before Initialise = %d", got)
	}
	if got := status("/x", "client"); got != http.StatusOK {
		t.Errorf("GET /x = %d", got)
	}
	if err := b.initialise(); err != nil {
		t.Fatal(err)
	}
	if got := status(ReadinessPath, "router"); got != http.StatusOK {
		t.Errorf("readiness after Initialise = %d", got)
	}
	status("/y", "client")
	listening, initialised := b.times()
	got := b.stats.snapshot()
	if got.KubeletProbes != 1 || got.OtherProbes != 1 || got.Requests != 2 || got.EarlyRequests != 1 ||
		got.FirstRequestAt.Before(listening) || !got.FirstRequestAt.Before(initialised) {
		t.Errorf("stats = %+v (listening %s, initialised %s)", got, listening, initialised)
	}

	// Initialised before it listens: from listening on.
	early, err := bindBackend(netip.MustParseAddr("127.0.15.3"), []uint16{8888}, nil, "ns", "early", "sb", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	early.manualInit = true
	if err := early.initialise(); err != nil {
		t.Fatal(err)
	}
	if _, at := early.times(); !at.IsZero() {
		t.Errorf("initialised at %s before listening", at)
	}
	if err := early.listen(); err != nil {
		t.Fatal(err)
	}
	if l, i := early.times(); l.IsZero() || !i.Equal(l) {
		t.Errorf("listening %s, initialised %s: want equal", l, i)
	}
	early.stop()
	if err := early.initialise(); err != errStopped {
		t.Errorf("initialise after stop = %v", err)
	}

	stopped, err := bindBackend(netip.MustParseAddr("127.0.15.4"), []uint16{8888}, nil, "ns", "stopped", "sb", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	stopped.listenAfter(time.Hour)
	stopped.stop()
	if err := stopped.listen(); err != errStopped {
		t.Errorf("listen after stop = %v", err)
	}
}
