package sim_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// fastProbes is the probe period of the Kubelet-mode tests: short, so a
// start takes a few of them.
const fastProbes = 100 * time.Millisecond

// TestKubelet covers Options.Kubelet: the order of a start as a kubelet
// runs it (address, listening, Ready; again at a resume and a restart),
// manual listening and initialisation, the kinds of probes, ReplacePod and StopPod, PodStats
// and the controller's reaction time, on one API server with a sim per
// namespace.
func TestKubelet(t *testing.T) {
	e := newEnv(t, "timed", "manual", "tcp", "exec", "slow-controller")
	// Shared by two subtests (a sim started in a subtest ends with it).
	manual := e.startSim(t, sim.Options{Namespaces: []string{"manual"}, IPBase: netip.MustParseAddr("127.0.11.1"),
		Ports: []uint16{8888, 9000}, GRPCPorts: []uint16{9000},
		Kubelet: &sim.Kubelet{ManualListen: true, ManualInit: true, ProbePeriod: fastProbes}})

	t.Run("order", func(t *testing.T) {
		const ns, name = "timed", "ordered"
		s := e.startSim(t, sim.Options{Namespaces: []string{ns}, IPBase: netip.MustParseAddr("127.0.10.1"), Kubelet: &sim.Kubelet{
			AddressDelay: 50 * time.Millisecond, ListenDelay: 50 * time.Millisecond, ListenJitter: 50 * time.Millisecond,
			InitDelay: 150 * time.Millisecond, ProbePeriod: fastProbes, SandboxStatusDelay: 50 * time.Millisecond,
		}})
		pods := e.watchPods(t, ns, name)
		e.createSandbox(t, "v1beta1", ns, name, nil, nil)
		st := e.waitSandbox(t, "v1beta1", ns, name, "Ready", ready)
		info, ok := s.PodInfo(ns, name)
		if !ok || !info.Ready || st.PodIPs[0] != info.IP.String() {
			t.Fatalf("PodInfo = %+v (%v), status %s", info, ok, st)
		}
		if !info.AddressSentAt.Before(info.ListeningAt) || info.InitialisedAt.Before(info.ListeningAt) ||
			!info.InitialisedAt.Before(info.ReadySentAt) {
			t.Errorf("want address write < listening <= initialised < Ready write: address %s, listening %s, initialised %s, Ready %s",
				info.AddressSentAt, info.ListeningAt, info.InitialisedAt, info.ReadySentAt)
		}

		// The API server saw the same: the pod had its address in a
		// status of its own, Pending and not Ready, before Ready.
		seq := pods(func(p *corev1.Pod) bool { return podReady(p) })
		if seq[0].Status.PodIP != "" {
			t.Errorf("pod created with a podIP: %+v", seq[0].Status)
		}
		var addressed bool
		for _, p := range seq {
			switch {
			case p.Status.PodIP == "":
			case !podReady(&p):
				if p.Status.Phase != corev1.PodPending || p.Status.PodIP != info.IP.String() {
					t.Errorf("addressed pod status = %s %s", p.Status.Phase, p.Status.PodIP)
				}
				addressed = true
			case !addressed:
				t.Errorf("pod written Ready (%s) without an address write before", p.Status.PodIP)
			}
		}

		pod, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), info.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: sim.ReadinessPath, Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}},
			PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
		}
		if got := pod.Spec.Containers[0].ReadinessProbe; got.String() != want.String() {
			t.Errorf("readiness probe = %s, want %s", got, want)
		}
		if stats, ok := s.PodStats(ns, info.Name); !ok || stats.KubeletProbes < 1 || stats.OtherProbes != 0 || stats.Requests != 0 {
			t.Errorf("PodStats = %+v (%v), want kubelet probes only", stats, ok)
		}
		if code := getCode(t, info.IP, 8888, sim.ReadinessPath, ""); code != http.StatusOK {
			t.Errorf("GET %s = %d after Ready", sim.ReadinessPath, code)
		}

		// A resume goes through the sequence again.
		e.patchSpec(t, "v1beta1", ns, name, map[string]any{"operatingMode": "Suspended"})
		e.waitSandbox(t, "v1beta1", ns, name, "Suspended", suspended)
		e.patchSpec(t, "v1beta1", ns, name, map[string]any{"operatingMode": "Running"})
		st = e.waitSandbox(t, "v1beta1", ns, name, "Ready again", func(s status) bool { return ready(s) && s.PodIPs[0] != info.IP.String() })
		next, _ := s.PodInfo(ns, name)
		if next.Name == info.Name || !next.AddressSentAt.Before(next.ListeningAt) || !next.InitialisedAt.Before(next.ReadySentAt) ||
			!next.AddressSentAt.After(info.ReadySentAt) {
			t.Errorf("resumed pod %+v, first %+v", next, info)
		}
		// And so does a restart.
		e.restartPod(t, s, "v1beta1", ns, name, st.PodIPs[0])
		if restarted, _ := s.PodInfo(ns, name); restarted.Name == next.Name || !restarted.AddressSentAt.Before(restarted.ListeningAt) {
			t.Errorf("restarted pod %+v, before %+v", restarted, next)
		}
	})

	t.Run("manual listen and init", func(t *testing.T) {
		const ns, name = "manual", "by-hand"
		s := manual
		e.createSandbox(t, "v1beta1", ns, name, nil, nil)
		info, err := s.WaitPod(t.Context(), ns, name, func(p sim.PodInfo) bool { return !p.AddressSentAt.IsZero() })
		if err != nil {
			t.Fatal(err)
		}
		if !info.ListeningAt.IsZero() || !info.InitialisedAt.IsZero() || info.Ready {
			t.Errorf("addressed pod %+v: listening, initialised or Ready before Listen", info)
		}
		pod, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), info.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Status.Phase != corev1.PodPending || pod.Status.PodIP != info.IP.String() || podReady(pod) {
			t.Errorf("addressed pod status = %s %q Ready %t", pod.Status.Phase, pod.Status.PodIP, podReady(pod))
		}
		e.waitSandbox(t, "v1beta1", ns, name, "not Ready without podIPs", func(s status) bool {
			return s.is("Ready", "False") && s.Conds["Ready"].Reason == "PodNotReady" && len(s.PodIPs) == 0
		})
		// The address is the pod's, and nothing listens there yet.
		mustRefuse(t, info.IP.String(), 8888)
		mustRefuse(t, info.IP.String(), 9000)

		if err := s.Listen(t.Context(), ns, name); err != nil {
			t.Fatal(err)
		}
		info, _ = s.PodInfo(ns, name)
		if info.ListeningAt.IsZero() || !info.InitialisedAt.IsZero() {
			t.Errorf("after Listen: %+v", info)
		}
		if got := get(t, info.IP.String(), 8888, "/early"); got.Pod != info.Name {
			t.Errorf("GET = %+v", got)
		}
		dial(t, info.IP, 9000) // the grpc-go port listens too
		if code := getCode(t, info.IP, 8888, sim.ReadinessPath, "router/1"); code != http.StatusServiceUnavailable {
			t.Errorf("GET %s = %d before Initialise, want 503", sim.ReadinessPath, code)
		}
		// The kubelet keeps probing and does not write the pod Ready.
		waitStats(t, s, ns, info.Name, "two kubelet probes", func(st sim.PodStats) bool { return st.KubeletProbes >= 2 })
		if now, _ := s.PodInfo(ns, name); now.Ready {
			t.Fatal("pod Ready before Initialise")
		}
		if pod, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), info.Name, metav1.GetOptions{}); err != nil || podReady(pod) {
			t.Fatalf("pod object Ready before Initialise (%v)", err)
		}

		if err := s.Initialise(ns, name); err != nil {
			t.Fatal(err)
		}
		info, err = s.WaitPod(t.Context(), ns, name, func(p sim.PodInfo) bool { return p.Ready })
		if err != nil {
			t.Fatal(err)
		}
		e.waitSandbox(t, "v1beta1", ns, name, "Ready", ready)
		if !info.ListeningAt.Before(info.InitialisedAt) || !info.InitialisedAt.Before(info.ReadySentAt) {
			t.Errorf("listening %s, initialised %s, Ready %s: out of order", info.ListeningAt, info.InitialisedAt, info.ReadySentAt)
		}
		get(t, info.IP.String(), 8888, "/late")
		stats, _ := s.PodStats(ns, info.Name)
		if stats.KubeletProbes < 3 || stats.OtherProbes != 1 || stats.Requests != 2 || stats.EarlyRequests != 1 ||
			stats.FirstRequestAt.Before(info.ListeningAt) || !stats.FirstRequestAt.Before(info.InitialisedAt) {
			t.Errorf("PodStats = %+v, want >= 3 kubelet probes, 1 other, 2 requests of which 1 early (before %s)", stats, info.InitialisedAt)
		}
		if _, ok := s.PodStats(ns, "nope"); ok {
			t.Error("PodStats of an unknown pod")
		}
		if err := s.Initialise(ns, "nope"); err == nil {
			t.Error("Initialise of an unknown sandbox succeeded")
		}
	})

	t.Run("ReplacePod", func(t *testing.T) {
		const ns, name = "manual", "rolling"
		s := manual
		e.createSandbox(t, "v1beta1", ns, name, nil, nil)
		start := func() sim.PodInfo {
			t.Helper()
			if err := s.Listen(t.Context(), ns, name); err != nil {
				t.Fatal(err)
			}
			info, _ := s.PodInfo(ns, name)
			return info
		}
		first := start()
		if err := s.Initialise(ns, name); err != nil {
			t.Fatal(err)
		}
		e.waitSandbox(t, "v1beta1", ns, name, "Ready", ready)

		// A Ready pod replaced: it terminates but serves on.
		old, err := s.ReplacePod(t.Context(), ns, name)
		if err != nil {
			t.Fatal(err)
		}
		if old.Name != first.Name || !old.Ready {
			t.Errorf("ReplacePod returned %+v, want the Ready %s", old, first.Name)
		}
		e.checkTerminating(t, ns, old.Name)
		if got := get(t, old.IP.String(), 8888, "/"); got.Pod != old.Name {
			t.Errorf("replaced pod GET = %+v", got)
		}
		st := e.waitSandbox(t, "v1beta1", ns, name, "not Ready while the new pod starts", func(s status) bool {
			return s.is("Ready", "False") && len(s.PodIPs) == 0
		})
		// The new pod starts from the beginning: it listens, is not
		// initialised, and is replaced in turn.
		second := start()
		if second.Name == old.Name || second.IP == old.IP || second.Ready {
			t.Fatalf("new pod %+v, replaced %+v", second, old)
		}
		if _, err := s.ReplacePod(t.Context(), ns, name); err != nil {
			t.Fatal(err)
		}
		if code := getCode(t, second.IP, 8888, sim.ReadinessPath, ""); code != http.StatusServiceUnavailable {
			t.Errorf("replaced uninitialised pod: GET %s = %d", sim.ReadinessPath, code)
		}
		if err := s.InitialisePod(ns, second.Name); err != nil {
			t.Fatal(err)
		}
		if code := getCode(t, second.IP, 8888, sim.ReadinessPath, ""); code != http.StatusOK {
			t.Errorf("replaced pod after InitialisePod: GET %s = %d", sim.ReadinessPath, code)
		}
		third := start()
		if err := s.Initialise(ns, name); err != nil {
			t.Fatal(err)
		}
		st = e.waitSandbox(t, "v1beta1", ns, name, "Ready on the third pod", ready)
		if st.PodIPs[0] != third.IP.String() || third.IP == second.IP || third.IP == old.IP {
			t.Errorf("Ready on %v; pods on %s, %s, %s", st.PodIPs, old.IP, second.IP, third.IP)
		}
		if got := get(t, old.IP.String(), 8888, "/"); got.Pod != old.Name {
			t.Errorf("first pod GET = %+v", got)
		}

		if err := s.StopPod(ns, third.Name); err == nil {
			t.Error("StopPod of the current pod succeeded")
		}
		for _, p := range []sim.PodInfo{old, second} {
			if err := s.StopPod(ns, p.Name); err != nil {
				t.Fatal(err)
			}
			mustRefuse(t, p.IP.String(), 8888)
			e.waitPodGone(t, ns, p.Name)
			if stats, ok := s.PodStats(ns, p.Name); !ok || stats.Requests+stats.OtherProbes == 0 {
				t.Errorf("PodStats of stopped pod %s = %+v (%v)", p.Name, stats, ok)
			}
		}
		if err := s.InitialisePod(ns, old.Name); err == nil {
			t.Error("InitialisePod of a stopped pod succeeded")
		}
		if pods := e.sandboxPods(t, ns, name); len(pods) != 1 || pods[0].Name != third.Name {
			t.Errorf("%d pods left, want only %s", len(pods), third.Name)
		}
	})

	t.Run("TCP probe", func(t *testing.T) {
		const ns, name = "tcp", "connect"
		s := e.startSim(t, sim.Options{Namespaces: []string{ns}, IPBase: netip.MustParseAddr("127.0.12.1"),
			Kubelet: &sim.Kubelet{Probe: sim.ProbeTCP, ManualInit: true, ProbePeriod: fastProbes}})
		e.createSandbox(t, "v1beta1", ns, name, nil, nil)
		// A connection is all it checks: Ready while the app initialises.
		st := e.waitSandbox(t, "v1beta1", ns, name, "Ready", ready)
		info, _ := s.PodInfo(ns, name)
		if !info.InitialisedAt.IsZero() || info.ListeningAt.After(info.ReadySentAt) {
			t.Errorf("PodInfo = %+v", info)
		}
		if code := getCode(t, info.IP, 8888, sim.ReadinessPath, ""); code != http.StatusServiceUnavailable {
			t.Errorf("GET %s = %d, want 503", sim.ReadinessPath, code)
		}
		pod := e.sandboxPods(t, ns, name)[0]
		probe := pod.Spec.Containers[0].ReadinessProbe
		if probe.TCPSocket == nil || probe.TCPSocket.Port != intstr.FromInt32(8888) || probe.HTTPGet != nil {
			t.Errorf("readiness probe = %s", probe)
		}
		if stats, _ := s.PodStats(ns, info.Name); stats.KubeletProbes != 0 || st.PodIPs[0] != info.IP.String() {
			t.Errorf("PodStats = %+v (a TCP probe sends no request)", stats)
		}
	})

	t.Run("exec probe", func(t *testing.T) {
		const ns, name = "exec", "cat"
		s := e.startSim(t, sim.Options{Namespaces: []string{ns}, IPBase: netip.MustParseAddr("127.0.13.1"),
			Kubelet: &sim.Kubelet{Probe: sim.ProbeExec, InitDelay: 2 * fastProbes, ProbePeriod: fastProbes}})
		e.createSandbox(t, "v1beta1", ns, name, nil, nil)
		e.waitSandbox(t, "v1beta1", ns, name, "Ready", ready)
		info, _ := s.PodInfo(ns, name)
		if !info.InitialisedAt.After(info.ListeningAt) || !info.InitialisedAt.Before(info.ReadySentAt) {
			t.Errorf("PodInfo = %+v", info)
		}
		probe := e.sandboxPods(t, ns, name)[0].Spec.Containers[0].ReadinessProbe
		if probe.Exec == nil || len(probe.Exec.Command) != 2 || probe.Exec.Command[0] != "cat" || probe.Exec.Command[1] != "/tmp/ready" {
			t.Errorf("readiness probe = %s", probe)
		}
		if stats, _ := s.PodStats(ns, info.Name); stats.KubeletProbes < 1 {
			t.Errorf("PodStats = %+v: the exec probe runs as the HTTP check", stats)
		}
	})

	t.Run("SandboxStatusDelay", func(t *testing.T) {
		// The controller never reacts within the test: what the pod says
		// is all there is.
		const ns = "slow-controller"
		s := e.startSim(t, sim.Options{Namespaces: []string{ns}, IPBase: netip.MustParseAddr("127.0.14.1"),
			Kubelet: &sim.Kubelet{ProbePeriod: fastProbes, SandboxStatusDelay: time.Hour}})
		notReady := func(s status) bool {
			return s.is("Ready", "False") && s.Conds["Ready"].Reason == "PodNotReady" && len(s.PodIPs) == 0
		}

		warm, uid, ip, err := s.CreateWarmPoolPod(t.Context(), ns, "pool")
		if err != nil {
			t.Fatal(err)
		}
		const adopter = "adopter"
		sb := e.createSandbox(t, "v1beta1", ns, adopter, nil, map[string]string{sim.AnnotationAdopt: warm})
		info, err := s.WaitPod(t.Context(), ns, adopter, nil)
		if err != nil {
			t.Fatal(err)
		}
		if info.Name != warm || info.UID != uid || info.IP != ip || !info.Ready {
			t.Fatalf("adopter's pod %+v, want the Ready warm pod %s", info, warm)
		}
		pod, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), warm, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ref := metav1.GetControllerOf(pod); ref == nil || ref.UID != sb.GetUID() || !podReady(pod) {
			t.Fatalf("warm pod not adopted: controller %+v, Ready %t", ref, podReady(pod))
		}
		e.waitSandbox(t, "v1beta1", ns, adopter, "not Ready, adopted", notReady)
		if got := get(t, ip.String(), 8888, "/"); got.Sandbox != adopter {
			t.Errorf("adopted pod GET = %+v", got)
		}

		const fresh = "fresh"
		e.createSandbox(t, "v1beta1", ns, fresh, nil, nil)
		info, err = s.WaitPod(t.Context(), ns, fresh, func(p sim.PodInfo) bool { return p.Ready })
		if err != nil {
			t.Fatal(err)
		}
		e.waitSandbox(t, "v1beta1", ns, fresh, "not Ready, pod Ready", notReady)
		if pod, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), info.Name, metav1.GetOptions{}); err != nil || !podReady(pod) {
			t.Errorf("pod %s not Ready in the API server (%v)", info.Name, err)
		}
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// watchPods starts watching the pods of a sandbox; the function it
// returns waits until one of them satisfies until and returns every
// state seen up to then, in order.
func (e *env) watchPods(t *testing.T, ns, sandbox string) func(until func(*corev1.Pod) bool) []corev1.Pod {
	t.Helper()
	pods := e.cs.CoreV1().Pods(ns)
	sel := metav1.ListOptions{LabelSelector: sim.LabelNameHash + "=" + sim.NameHash(sandbox)}
	list, err := pods.List(t.Context(), sel)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Fatalf("sandbox %s/%s has pods already", ns, sandbox)
	}
	return func(until func(*corev1.Pod) bool) []corev1.Pod {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel.LabelSelector
			return pods.Watch(ctx, o)
		}}
		var seen []corev1.Pod
		_, err := watchtools.Until(ctx, list.ResourceVersion, lw, func(ev watch.Event) (bool, error) {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				return false, nil
			}
			seen = append(seen, *p)
			return until(p), nil
		})
		if err != nil {
			t.Fatalf("pods of %s/%s: %v after %d events", ns, sandbox, err, len(seen))
		}
		return seen
	}
}

// checkTerminating checks that the pod has a deletionTimestamp, or is
// gone (the deletion was answered before ReplacePod returned).
func (e *env) checkTerminating(t *testing.T, ns, name string) {
	t.Helper()
	pod, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		t.Fatal(err)
	case pod.DeletionTimestamp == nil:
		t.Errorf("pod %s/%s has no deletionTimestamp", ns, name)
	}
}

// waitStats polls a pod's counters until cond holds: they change with
// requests, which send no event.
func waitStats(t *testing.T, s *sim.Sim, ns, pod, what string, cond func(sim.PodStats) bool) sim.PodStats {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		st, ok := s.PodStats(ns, pod)
		if ok && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s/%s: %s: stats %+v (%v)", ns, pod, what, st, ok)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// getCode GETs path from a backend with a User-Agent (empty: Go's) and
// returns the status code.
func getCode(t *testing.T, ip netip.Addr, port uint16, path, userAgent string) int {
	t.Helper()
	url := "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(int(port))) + path
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if userAgent != "" {
		req.Header.Set("User-Agent", userAgent)
	}
	resp, err := httpClient(t).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// dial checks that the address accepts connections.
func dial(t *testing.T, ip netip.Addr, port uint16) {
	t.Helper()
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	conn.Close()
}
