package sim

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Kubelet is the start sequence of a pod, as a real kubelet runs it.
type Kubelet struct {
	// AddressDelay: from creating the Pod object to the status write that
	// gives it its podIP (phase Pending, Ready=False, container waiting).
	AddressDelay time.Duration
	// ListenDelay, plus a uniform random part in [0, ListenJitter): from
	// that address write to the backend listening on the pod's address.
	// Before it, connections to the address are refused.
	ListenDelay, ListenJitter time.Duration
	// ManualListen: the backend listens only when Listen is called.
	ManualListen bool
	// InitDelay: after listening, the readiness path answers 503 for this
	// long, then 200 (the app is initialised). ManualInit: until Initialise.
	InitDelay  time.Duration
	ManualInit bool
	// Probe is the readiness probe in the pod spec: ProbeHTTP (default: GET
	// ReadinessPath on the first port, by its port NAME), ProbeTCP
	// (tcpSocket on the first port, by number) or ProbeExec (exec
	// ["cat", "/tmp/ready"], which the sim's kubelet runs as the HTTP check).
	Probe string
	// ProbePeriod is the readiness probe's period (default 10s): the
	// kubelet probes at the address write and every period after, and the
	// first success writes the pod Running and Ready. The pod spec's
	// periodSeconds is this rounded up to whole seconds (at least 1).
	ProbePeriod time.Duration
	// SandboxStatusDelay: from the pod's Ready write (or a warm-pool
	// pod's adoption) to the Sandbox status write (Ready, podIPs): the
	// controller's reaction time.
	SandboxStatusDelay time.Duration
}

// The readiness probes of Kubelet.Probe, and the path of the HTTP one.
const (
	ProbeHTTP = "http"
	ProbeTCP  = "tcp"
	ProbeExec = "exec"
	// ReadinessPath is the readiness probe's HTTP path in Kubelet mode.
	ReadinessPath = "/ready"
)

const (
	// defaultProbePeriod is Kubernetes' default periodSeconds.
	defaultProbePeriod = 10 * time.Second
	// probeTimeout is the probes' timeout, Kubernetes' default
	// timeoutSeconds.
	probeTimeout = time.Second
)

// withDefaults checks k against the ports and fills in its defaults.
func (k Kubelet) withDefaults(ports, grpcPorts []uint16) (Kubelet, error) {
	for name, d := range map[string]time.Duration{
		"AddressDelay": k.AddressDelay, "ListenDelay": k.ListenDelay, "ListenJitter": k.ListenJitter,
		"InitDelay": k.InitDelay, "ProbePeriod": k.ProbePeriod, "SandboxStatusDelay": k.SandboxStatusDelay,
	} {
		if d < 0 {
			return Kubelet{}, fmt.Errorf("%s %s is negative", name, d)
		}
	}
	switch k.Probe {
	case "":
		k.Probe = ProbeHTTP
	case ProbeHTTP, ProbeTCP, ProbeExec:
	default:
		return Kubelet{}, fmt.Errorf("Probe %q: want %q, %q or %q", k.Probe, ProbeHTTP, ProbeTCP, ProbeExec)
	}
	if k.Probe != ProbeTCP && slices.Contains(grpcPorts, ports[0]) {
		// grpc-go does not answer an HTTP/1.1 GET.
		return Kubelet{}, fmt.Errorf("Probe %q checks the first port, %d, which is a gRPC port", k.Probe, ports[0])
	}
	if k.ProbePeriod == 0 {
		k.ProbePeriod = defaultProbePeriod
	}
	return k, nil
}

// listenDelay draws the time from a pod's address write to its backend
// listening.
func (k *Kubelet) listenDelay() time.Duration {
	d := k.ListenDelay
	if k.ListenJitter > 0 {
		d += rand.N(k.ListenJitter)
	}
	return d
}

// probeSpec is the container's readiness probe; the first port is
// portName, port.
func (k *Kubelet) probeSpec(portName string, port uint16) *corev1.Probe {
	period := max(int32((k.ProbePeriod+time.Second-1)/time.Second), 1)
	p := &corev1.Probe{
		PeriodSeconds:    period,
		TimeoutSeconds:   int32(probeTimeout / time.Second),
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
	switch k.Probe {
	case ProbeTCP:
		p.TCPSocket = &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}
	case ProbeExec:
		p.Exec = &corev1.ExecAction{Command: []string{"cat", "/tmp/ready"}}
	default:
		p.HTTPGet = &corev1.HTTPGetAction{Path: ReadinessPath, Port: intstr.FromString(portName), Scheme: corev1.URISchemeHTTP}
	}
	return p
}

// newProbeClient is the client of the kubelet's HTTP probes: a new
// connection for each probe and no redirects followed (a 3xx is a
// success), as a kubelet probes.
func newProbeClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// startPod plays a Kubelet-mode pod's start up to its address write (the
// caller holds st.mu; p is st.pod, not Ready). From there the backend's
// timers and the pod's kubelet go on by themselves: the kubelet writes the
// pod Ready and enqueues the sandbox for its status.
func (s *Sim) startPod(ctx context.Context, k key, st *sandboxState, p *podState) error {
	if p.addressed {
		return nil
	}
	if wait := time.Until(p.addressDue); wait > 0 {
		s.queue.AddAfter(k, wait)
		return nil
	}
	sentAt, err := s.writePodStatus(ctx, p, func(ps *corev1.PodStatus, start, now metav1.Time) {
		// The pod sandbox runs, the container is being created.
		ps.Phase = corev1.PodPending
		notReady := "containers with unready status: [" + ContainerName + "]"
		ps.Conditions = []corev1.PodCondition{
			{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: start},
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: start, Reason: "ContainersNotReady", Message: notReady},
			{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, LastTransitionTime: start, Reason: "ContainersNotReady", Message: notReady},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: start},
		}
		started := false
		ps.ContainerStatuses = []corev1.ContainerStatus{{
			Name:    ContainerName,
			Image:   "sim",
			Ready:   false,
			Started: &started,
			State:   corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
		}}
	})
	if err != nil {
		return fmt.Errorf("write address of pod %s/%s: %w", p.namespace, p.name, err)
	}
	p.addressed, p.addressSentAt = true, sentAt
	// The kubelet probes at once; that first probe is run before the
	// address is published, so that a test that saw the address knows
	// the next one is a whole period away (a backend it makes listen
	// now is found by the router's probe, not the kubelet's).
	firstOK := s.probe(p.kubeletCtx, p)
	s.publish(k, p)
	s.logf("sim: pod %s/%s Pending with IP %s", p.namespace, p.name, p.ip)
	if !s.kubelet.ManualListen {
		p.backend.listenAfter(s.kubelet.listenDelay() - time.Since(sentAt))
	}
	// Started by a worker only: Close waits for the workers, then for
	// these.
	s.kubeletWG.Go(func() { s.runKubelet(k, st, p, firstOK) })
	return nil
}

// runKubelet goes on from the first probe (made at the address write,
// firstOK its result) and probes every ProbePeriod after, until a probe
// succeeds and the pod is written Ready, or the pod goes.
func (s *Sim) runKubelet(k key, st *sandboxState, p *podState, firstOK bool) {
	ctx := p.kubeletCtx
	t := time.NewTicker(s.kubelet.ProbePeriod)
	defer t.Stop()
	ok := firstOK
	for {
		if ok && s.probedReady(ctx, k, st, p) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok = s.probe(ctx, p)
	}
}

// probe runs the readiness probe against the pod's backend, over the
// network as a kubelet does.
func (s *Sim) probe(ctx context.Context, p *podState) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	addr := netip.AddrPortFrom(p.ip, s.ports[0]).String()
	if s.kubelet.Probe == ProbeTCP {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+ReadinessPath, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", kubeletUserAgent)
	req.Header.Set("Accept", "*/*")
	resp, err := s.probeClient.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// probedReady writes the pod Ready after a successful probe, and has the
// sandbox's status follow after SandboxStatusDelay. It reports whether
// the kubelet is done: the pod is Ready, or no longer the sandbox's (a
// failed write is tried again at the next probe).
func (s *Sim) probedReady(ctx context.Context, k key, st *sandboxState, p *podState) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pod != p || p.ready || p.isGone() || ctx.Err() != nil {
		return true
	}
	if _, err := s.writePodReady(ctx, p); err != nil {
		if ctx.Err() == nil {
			s.logf("sim: %v (probing again)", err)
		}
		return false
	}
	p.statusDue = time.Now().Add(s.kubelet.SandboxStatusDelay)
	s.publish(k, p)
	s.queue.AddAfter(k, s.kubelet.SandboxStatusDelay)
	return true
}

// Listen (with Kubelet.ManualListen) makes the backend of the sandbox's
// current pod listen. It first waits (bounded by ctx) until that pod has
// its address written, so a backend never listens before its pod has an
// address; a backend that listens already is left as it is.
func (s *Sim) Listen(ctx context.Context, namespace, sandbox string) error {
	k := key{namespace: namespace, name: sandbox}
	info, err := s.WaitPod(ctx, namespace, sandbox, func(p PodInfo) bool {
		return !p.AddressSentAt.IsZero() || !p.ListeningAt.IsZero()
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	p := s.published[k]
	s.mu.Unlock()
	if p == nil || p.uid != info.UID {
		return fmt.Errorf("sim: pod %s of sandbox %s went away", info.Name, k)
	}
	if err := p.backend.listen(); err != nil {
		return fmt.Errorf("sim: pod %s of sandbox %s: %w", p.name, k, err)
	}
	return nil
}

// Initialise (with Kubelet.ManualInit) makes ReadinessPath of the
// sandbox's current pod answer 200: at once if the backend listens, else
// from when it does. An initialised backend is left as it is.
func (s *Sim) Initialise(namespace, sandbox string) error {
	k := key{namespace: namespace, name: sandbox}
	s.mu.Lock()
	p := s.published[k]
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("sim: sandbox %s has no pod", k)
	}
	if err := p.backend.initialise(); err != nil {
		return fmt.Errorf("sim: pod %s of sandbox %s: %w", p.name, k, err)
	}
	return nil
}

// InitialisePod is Initialise for a pod by its name: a sandbox's current
// pod, a warm-pool pod, or one that ReplacePod replaced and whose backend
// still serves.
func (s *Sim) InitialisePod(namespace, pod string) error {
	s.mu.Lock()
	p := s.podByNameLocked(namespace, pod, s.pods)
	if p == nil {
		p = s.podByNameLocked(namespace, pod, s.replaced)
	}
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("sim: no pod %s/%s with a backend", namespace, pod)
	}
	if err := p.backend.initialise(); err != nil {
		return fmt.Errorf("sim: pod %s/%s: %w", namespace, pod, err)
	}
	return nil
}

// podByNameLocked finds a pod in m by name (the caller holds s.mu). A
// scan: it serves the tests' calls, not a hot path.
func (s *Sim) podByNameLocked(namespace, name string, m map[types.UID]*podState) *podState {
	for _, p := range m {
		if p.namespace == namespace && p.name == name {
			return p
		}
	}
	return nil
}

// ReplacePod terminates the sandbox's current pod gracefully, as a
// rolling replacement or a node drain does: the Pod object is deleted
// with a grace period, so it stays with a deletionTimestamp (there is no
// kubelet to finish the deletion), and its backend keeps serving, ready
// to answer requests still on their way, until StopPod or Close. The
// sandbox then gets a new pod with a new address, which starts as any
// new pod does. It returns the replaced pod as it was.
func (s *Sim) ReplacePod(ctx context.Context, namespace, sandbox string) (old PodInfo, err error) {
	k := key{namespace: namespace, name: sandbox}
	s.mu.Lock()
	st := s.states[k]
	s.mu.Unlock()
	if st == nil {
		return PodInfo{}, fmt.Errorf("sim: sandbox %s has no pod", k)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	p := st.pod
	if p == nil {
		return PodInfo{}, fmt.Errorf("sim: sandbox %s has no pod", k)
	}
	s.mu.Lock()
	old, _ = s.podInfoLocked(k)
	s.mu.Unlock()
	grace := int64(replaceGracePeriod / time.Second)
	err = s.cs.CoreV1().Pods(namespace).Delete(ctx, p.name, metav1.DeleteOptions{
		GracePeriodSeconds: &grace,
		Preconditions:      &metav1.Preconditions{UID: &p.uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return PodInfo{}, fmt.Errorf("sim: delete pod %s/%s: %w", namespace, p.name, err)
	}
	// Its kubelet stops; its backend, with what it has scheduled, goes on.
	p.stopKubelet()
	st.pod = nil
	s.publish(k, nil)
	s.mu.Lock()
	delete(s.pods, p.uid)
	s.replaced[p.uid] = p
	s.mu.Unlock()
	s.queue.Add(k)
	s.logf("sim: pod %s/%s of sandbox %s terminating (backend %s serving until StopPod)", namespace, p.name, k, p.ip)
	return old, nil
}

// replaceGracePeriod is the grace period of ReplacePod's deletion: the
// pods' terminationGracePeriodSeconds.
const replaceGracePeriod = 30 * time.Second

// StopPod ends a pod that ReplacePod replaced, as its kubelet does once
// the container exits: the backend stops (connections close, new ones
// are refused) and the Pod object is deleted for good.
func (s *Sim) StopPod(namespace, pod string) error {
	s.mu.Lock()
	p := s.podByNameLocked(namespace, pod, s.replaced)
	if p != nil {
		// Removed at once: a reconcile of the sandbox must not take the
		// object for a stray pod of a previous sim meanwhile.
		delete(s.replaced, p.uid)
		s.removed[p.uid] = true
	}
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("sim: no replaced pod %s/%s (StopPod ends only ReplacePod's pods)", namespace, pod)
	}
	p.stop()
	if err := s.forceDelete(s.ctx, namespace, pod, p.uid); err != nil {
		s.mu.Lock()
		delete(s.removed, p.uid) // a stray object now, for the next reconcile
		s.mu.Unlock()
		return fmt.Errorf("sim: %w", err)
	}
	s.logf("sim: replaced pod %s/%s stopped and deleted", namespace, pod)
	return nil
}
