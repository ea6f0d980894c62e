package sim_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// flipStartDelay is longer than the time between the patches of a flip
// sequence (they are sent back to back), so pods are suspended while they
// start.
const flipStartDelay = 300 * time.Millisecond

// TestSuspendResumeFlips: a sandbox resumed right after (or while) it was
// suspended comes back on a new pod, and any sequence of suspend and
// resume patches, closer together than the start delay and through either
// API version, ends in the state of the last one: Ready on exactly one pod
// whose backend serves, or suspended with no pod.
func TestSuspendResumeFlips(t *testing.T) {
	e := newEnv(t)
	s := e.startSim(t, sim.Options{StartDelay: flipStartDelay, IPBase: netip.MustParseAddr("127.0.6.1")})
	const ns = "default"

	t.Run("resume right after the suspension", func(t *testing.T) {
		const name = "bounce"
		e.createSandbox(t, "v1beta1", ns, name, nil, nil)
		st := e.waitSandbox(t, "v1beta1", ns, name, "Ready", ready)
		oldIP := st.PodIPs[0]
		oldPod, _, _ := s.Pod(ns, name)
		gen := e.patch(t, "v1beta1", ns, name, map[string]any{"spec": map[string]any{"operatingMode": "Suspended"}})
		e.waitSandbox(t, "v1beta1", ns, name, "Suspended", both(observed(gen), suspended))
		gen = e.patch(t, "v1beta1", ns, name, map[string]any{"spec": map[string]any{"operatingMode": "Running"}})
		st = e.waitSandbox(t, "v1beta1", ns, name, "Ready again", both(observed(gen), ready))
		if st.PodIPs[0] == oldIP {
			t.Fatalf("resumed on the old address %s", oldIP)
		}
		e.checkConverged(t, s, "v1beta1", ns, name, true, map[string]bool{oldIP: true})
		if info := get(t, st.PodIPs[0], 8888, "/"); info.Pod == oldPod {
			t.Errorf("served by the suspended pod %s", oldPod)
		}
	})

	// Each sequence starts from a Ready sandbox. The patches go out back
	// to back, so the sim sees some of them, in any grouping; or, with
	// observeEach, each once the sim has acted on the one before (which
	// for a resume is when its new pod starts, so every pod but the last
	// is suspended within its start delay).
	for _, tc := range []struct {
		name, sandbox, version string
		flips                  []map[string]any
		observeEach            bool
	}{
		{"v1beta1 each seen, within the start delay", "beta-each", "v1beta1", beta("Suspended", "Running", "Suspended", "Running", "Suspended", "Running"), true},
		{"v1alpha1 each seen, within the start delay", "alpha-each", "v1alpha1", alpha(0, 1, 0, 1, 0), true},
		{"v1beta1 ending Running", "beta-running", "v1beta1", beta("Suspended", "Running", "Suspended", "Running", "Suspended", "Running"), false},
		{"v1beta1 ending Suspended", "beta-suspended", "v1beta1", beta("Suspended", "Running", "Suspended", "Running", "Suspended"), false},
		{"v1alpha1 ending Running", "alpha-running", "v1alpha1", alpha(0, 1, 0, 1, 0, 1), false},
		{"v1alpha1 ending Suspended", "alpha-suspended", "v1alpha1", alpha(0, 1, 0, 1, 0), false},
		{"resume while starting", "starter", "v1beta1", beta("Suspended", "Running"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.sandbox
			spec := map[string]any{"operatingMode": "Running"}
			if tc.version == "v1alpha1" {
				spec = map[string]any{"replicas": int64(1)}
			}
			e.createSandbox(t, tc.version, ns, name, spec, nil)
			seen := map[string]bool{}
			if tc.name != "resume while starting" {
				st := e.waitSandbox(t, tc.version, ns, name, "Ready", ready)
				seen[st.PodIPs[0]] = true
			} else if info, err := s.WaitPod(t.Context(), ns, name, nil); err != nil {
				t.Fatal(err)
			} else {
				seen[info.IP.String()] = true // starting: flipStartDelay to go
			}
			isRunning := func(f map[string]any) bool { return f["operatingMode"] == "Running" || f["replicas"] == int64(1) }
			var gen int64
			for i, f := range tc.flips {
				gen = e.patch(t, tc.version, ns, name, map[string]any{"spec": f})
				if !tc.observeEach {
					continue
				}
				if isRunning(f) {
					st := e.waitSandbox(t, tc.version, ns, name, fmt.Sprintf("flip %d started", i), both(observed(gen), func(s status) bool {
						return s.Conds["Ready"].Reason == "PodNotReady" || ready(s)
					}))
					if ready(st) && i < len(tc.flips)-1 {
						t.Logf("flip %d: Ready before the next flip; the start delay is not shorter than a status round trip here", i)
					}
					info, ok := s.PodInfo(ns, name)
					if !ok {
						t.Fatalf("flip %d: no pod after the resume", i)
					}
					if seen[info.IP.String()] {
						t.Fatalf("flip %d: resumed on an address seen before, %s", i, info.IP)
					}
					seen[info.IP.String()] = true
				} else {
					e.waitSandbox(t, tc.version, ns, name, fmt.Sprintf("flip %d suspended", i), both(observed(gen), suspended))
				}
			}
			running := isRunning(tc.flips[len(tc.flips)-1])
			want := suspended
			if running {
				want = ready
			}
			st := e.waitSandbox(t, tc.version, ns, name, fmt.Sprintf("the last spec (generation %d)", gen), both(observed(gen), want))
			if running {
				delete(seen, st.PodIPs[0]) // may be the first pod if the sim saw no suspension
			}
			e.checkConverged(t, s, tc.version, ns, name, running, seen)
		})
	}
}

func beta(modes ...string) []map[string]any {
	var out []map[string]any
	for _, m := range modes {
		out = append(out, map[string]any{"operatingMode": m})
	}
	return out
}

func alpha(replicas ...int64) []map[string]any {
	var out []map[string]any
	for _, r := range replicas {
		out = append(out, map[string]any{"replicas": r})
	}
	return out
}

// checkConverged checks a sandbox whose status shows its last spec: when
// running, exactly one pod object, the sim's current pod, Ready with the
// status's address, serving; when suspended, no pod. Addresses in stale
// refuse connections either way.
func (e *env) checkConverged(t *testing.T, s *sim.Sim, version, ns, name string, running bool, stale map[string]bool) {
	t.Helper()
	u, err := e.dyn.Resource(gvr(version)).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := readStatus(u)
	pods := e.sandboxPods(t, ns, name)
	info, ok := s.PodInfo(ns, name)
	if !running {
		if len(pods) != 0 || ok {
			t.Errorf("suspended sandbox has %d pod objects, sim pod %+v (%v)", len(pods), info, ok)
		}
	} else {
		switch {
		case !ok || !info.Ready:
			t.Errorf("sim pod %+v (%v), want a Ready one", info, ok)
		case len(pods) != 1 || pods[0].UID != info.UID:
			var names []string
			for _, p := range pods {
				names = append(names, p.Name+" ("+string(p.UID)+")")
			}
			t.Errorf("pod objects %v, want exactly the sim's %s (%s)", names, info.Name, info.UID)
		case pods[0].Status.PodIP != info.IP.String() || len(st.PodIPs) != 1 || st.PodIPs[0] != info.IP.String():
			t.Errorf("pod IP %s, sandbox podIPs %v, sim %s", pods[0].Status.PodIP, st.PodIPs, info.IP)
		default:
			if got := get(t, info.IP.String(), 8888, "/"); got.Pod != info.Name || got.Sandbox != name {
				t.Errorf("GET = %+v, want pod %s of %s", got, info.Name, name)
			}
		}
	}
	for ip := range stale {
		if running && ip == info.IP.String() {
			continue
		}
		mustRefuse(t, ip, 8888)
	}
}

// TestMetadataChangeKeepsPod: annotation and label patches of a running
// sandbox (the router's last-activity annotation) leave its pod alone: the
// same pod object, not written to, its open stream still flowing, and the
// Sandbox's Ready condition unchanged.
func TestMetadataChangeKeepsPod(t *testing.T) {
	e := newEnv(t)
	s := e.startSim(t, sim.Options{IPBase: netip.MustParseAddr("127.0.7.1")})
	const ns, name = "default", "busy"
	e.createSandbox(t, "v1beta1", ns, name, nil, nil)
	before := e.waitSandbox(t, "v1beta1", ns, name, "Ready", ready)
	info, err := s.WaitPod(t.Context(), ns, name, func(p sim.PodInfo) bool { return p.Ready })
	if err != nil {
		t.Fatal(err)
	}
	podBefore, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), info.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// A stream opened before the changes must outlive them.
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(info.IP.String(), "8888")+"/sse", nil)
	resp, err := httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewScanner(resp.Body)
	next := func() string {
		t.Helper()
		for events.Scan() {
			if line := events.Text(); line != "" {
				return line
			}
		}
		t.Fatalf("SSE stream ended: %v", events.Err())
		return ""
	}
	first := next()

	for i := range 3 {
		e.patch(t, "v1beta1", ns, name, map[string]any{"metadata": map[string]any{"annotations": map[string]any{
			"sandbox-router.dev/last-activity": time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339),
		}}})
	}
	e.patch(t, "v1beta1", ns, name, map[string]any{"metadata": map[string]any{"labels": map[string]any{"team": "a"}}})
	// A barrier: metadata changes leave the generation alone, so nothing
	// in the status shows the sim has seen them. A spec field the sim
	// does not read bumps the generation; once the status carries it, the
	// sim has read a cache holding every change above.
	gen := e.patch(t, "v1beta1", ns, name, map[string]any{"spec": map[string]any{"note": "unrelated"}})
	after := e.waitSandbox(t, "v1beta1", ns, name, "generation "+strconv.FormatInt(gen, 10)+" observed", both(observed(gen), ready))

	now, ok := s.PodInfo(ns, name)
	if !ok || now != info {
		t.Errorf("sim pod after the changes = %+v (%v), before %+v", now, ok, info)
	}
	podAfter, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), info.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("pod after the changes: %v", err)
	}
	if podAfter.UID != podBefore.UID || podAfter.ResourceVersion != podBefore.ResourceVersion {
		t.Errorf("pod %s written or replaced: uid %s rv %s, before uid %s rv %s", info.Name,
			podAfter.UID, podAfter.ResourceVersion, podBefore.UID, podBefore.ResourceVersion)
	}
	if pods := e.sandboxPods(t, ns, name); len(pods) != 1 {
		t.Errorf("%d pods, want 1", len(pods))
	}
	if !slices.Equal(after.PodIPs, before.PodIPs) || after.Conds["Ready"].LastTransitionTime != before.Conds["Ready"].LastTransitionTime {
		t.Errorf("status after the changes %s, before %s", after, before)
	}
	// The stream goes on from where it was.
	if second, third := next(), next(); first != "data: 0" || second != "data: 1" || third != "data: 2" {
		t.Errorf("SSE events %q %q %q, want data: 0, 1, 2", first, second, third)
	}
}

// TestReadySentAt: PodInfo.ReadySentAt is when the sim sent the pod's
// Ready status: zero while the pod starts (its backend already serving),
// then between the pod's creation and the Sandbox turning Ready; kept by
// PodInfo as long as the pod lives, and new for a new pod.
func TestReadySentAt(t *testing.T) {
	e := newEnv(t)
	s := e.startSim(t, sim.Options{StartDelay: flipStartDelay, IPBase: netip.MustParseAddr("127.0.6.101")})
	const ns, name = "default", "timed"
	created := time.Now()
	e.createSandbox(t, "v1beta1", ns, name, nil, nil)
	starting, err := s.WaitPod(t.Context(), ns, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if starting.Ready || !starting.ReadySentAt.IsZero() || !starting.AddressSentAt.IsZero() {
		t.Errorf("starting pod %+v: Ready, ReadySentAt or AddressSentAt set", starting)
	}
	// Outside Kubelet mode the backend listens, initialised, before the
	// pod object exists.
	if starting.ListeningAt.Before(created) || !starting.InitialisedAt.Equal(starting.ListeningAt) {
		t.Errorf("starting pod %+v: want ListeningAt set and InitialisedAt equal to it", starting)
	}
	// The backend accepts before the pod is Ready.
	if got := get(t, starting.IP.String(), 8888, "/"); got.Pod != starting.Name {
		t.Errorf("GET of the starting pod = %+v", got)
	}
	e.waitSandbox(t, "v1beta1", ns, name, "Ready", ready)
	seenReady := time.Now()
	info, ok := s.PodInfo(ns, name)
	if !ok || !info.Ready || info.Name != starting.Name {
		t.Fatalf("PodInfo = %+v (%v)", info, ok)
	}
	if info.ReadySentAt.Before(created) || info.ReadySentAt.After(seenReady) {
		t.Errorf("ReadySentAt %s not between the sandbox's creation %s and its Ready status seen %s", info.ReadySentAt, created, seenReady)
	}
	// The address comes with Ready.
	if !info.AddressSentAt.Equal(info.ReadySentAt) || !info.ListeningAt.Before(info.ReadySentAt) {
		t.Errorf("PodInfo %+v: want AddressSentAt = ReadySentAt, after ListeningAt", info)
	}
	if stats, ok := s.PodStats(ns, info.Name); !ok || stats.Requests != 1 || stats.EarlyRequests != 0 || stats.KubeletProbes != 0 {
		t.Errorf("PodStats = %+v (%v), want the one GET, not early", stats, ok)
	}

	// A restarted pod gets its own.
	restarted := time.Now()
	if err := s.RestartPod(t.Context(), ns, name); err != nil {
		t.Fatal(err)
	}
	next, err := s.WaitPod(t.Context(), ns, name, func(p sim.PodInfo) bool { return p.Ready && p.Name != info.Name })
	if err != nil {
		t.Fatal(err)
	}
	if !next.ReadySentAt.After(restarted) {
		t.Errorf("ReadySentAt of the new pod %s, restarted at %s", next.ReadySentAt, restarted)
	}
}
