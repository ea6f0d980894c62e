package sim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

const (
	// DefaultPort is the port of the sandbox's HTTP server.
	DefaultPort uint16 = 8888
	// workers is how many keys are reconciled at once.
	workers = 4
	// nameHashIndex indexes pods by "<namespace>/<name-hash label>".
	nameHashIndex = "nameHash"
)

// DefaultIPBase is the first loopback address handed to a pod.
var DefaultIPBase = netip.AddrFrom4([4]byte{127, 0, 1, 1})

// Options configure New.
type Options struct {
	// Config reaches the API server; it needs to read and write Sandboxes
	// (and their status) and Pods (and their status) in Namespaces.
	Config *rest.Config
	// Namespaces limits the sim to these namespaces; empty means all.
	Namespaces []string
	// StartDelay is the time from creating a pod to writing it Ready,
	// like an image pull and a container start.
	StartDelay time.Duration
	// Ports are the ports every backend listens on; default [8888].
	Ports []uint16
	// PortNames names container ports (at most 15 characters, lowercase);
	// unnamed ports are "http" for 8888 and "http-<port>" for others.
	PortNames map[uint16]string
	// GRPCPorts, a subset of Ports, are served by a grpc-go server of its
	// own (its HTTP/2 transport, not net/http's) with the standard health
	// service: "" is SERVING, any other service NotFound, which grpc-go
	// sends as a trailers-only response.
	GRPCPorts []uint16
	// Logf receives what the sim does; nil discards it.
	Logf func(format string, args ...any)
	// IPBase is the first pod address; default 127.0.1.1. Addresses
	// count up from it and are never reused in the process. Test packages
	// that run sims at the same time (go test runs packages in parallel)
	// should pass different bases.
	IPBase netip.Addr
	// Version is the Sandbox API version the sim reads and writes:
	// "v1beta1" or "v1alpha1". Empty means v1beta1 when the API server
	// serves it, else v1alpha1.
	Version string
	// ManualReady leaves pods Pending after they are created (backend
	// running) until MarkReady is called, instead of after StartDelay.
	ManualReady bool
	// Kubelet, when set, plays a kubelet's start sequence for sandbox pods
	// instead of StartDelay and ManualReady (warm-pool pods keep theirs).
	Kubelet *Kubelet
}

// key names a sandbox, or a warm-pool pod when pod is true.
type key struct {
	namespace, name string
	pod             bool
}

func (k key) String() string { return k.namespace + "/" + k.name }

// sandboxState is what the sim holds for one sandbox. mu serializes the
// reconcile of the sandbox with MarkReady and RestartPod.
type sandboxState struct {
	mu  sync.Mutex
	uid types.UID // the Sandbox object the pod belongs to
	pod *podState
}

// podState is one pod the sim created, with its backend.
type podState struct {
	namespace, name string
	uid             types.UID
	ip              netip.Addr
	backend         *backend
	startedAt       time.Time // when the start delay is over (not in Kubelet mode)
	// kubelet: the pod plays Options.Kubelet's start sequence. Its
	// kubelet (the prober) runs under kubeletCtx, which stopKubelet ends
	// when the pod goes or is replaced.
	kubelet     bool
	kubeletCtx  context.Context
	stopKubelet context.CancelFunc
	// The rest is guarded by the owner's mu (the sandbox's, or the
	// warm-pool pod's creator until it is listed).
	//
	// In Kubelet mode the address write is due at addressDue; addressed
	// once it was sent, at addressSentAt.
	addressDue    time.Time
	addressed     bool
	addressSentAt time.Time
	// ready: its Pod status Ready was written, by a request sent at
	// readySentAt.
	ready       bool
	readySentAt time.Time
	// statusDue: the Sandbox status may say Ready from then on (the
	// controller's reaction time, Kubelet.SandboxStatusDelay).
	statusDue time.Time
	gone      chan struct{}
	goneOnce  sync.Once
}

// stop ends the pod's kubelet and stops its backend.
func (p *podState) stop() {
	p.stopKubelet()
	p.backend.stop()
}

// markGone records that the pod object was deleted (or is being deleted)
// by someone.
func (p *podState) markGone() { p.goneOnce.Do(func() { close(p.gone) }) }

func (p *podState) isGone() bool {
	select {
	case <-p.gone:
		return true
	default:
		return false
	}
}

// PodInfo describes the current pod of a sandbox. The times are the
// sim's clock (with its monotonic reading), zero until they happen.
type PodInfo struct {
	Name string
	UID  types.UID
	// IP is the pod's address; its backend listens there from before the
	// pod object exists, or in Kubelet mode from ListeningAt.
	IP netip.Addr
	// Ready: its Pod status Ready (Running, podIP) has been written.
	Ready bool
	// ReadySentAt is when the request that wrote the Ready status was
	// sent (the sim's clock, just before the successful UpdateStatus);
	// zero while not Ready. For an adopted warm-pool pod it is when the
	// pod became Ready in the pool.
	ReadySentAt time.Time
	// AddressSentAt is when the request that wrote the pod's podIP was
	// sent: in Kubelet mode the status write before Ready; otherwise the
	// address comes with Ready, and it equals ReadySentAt.
	AddressSentAt time.Time
	// ListeningAt is when the backend's listeners had all been bound and
	// were listening; outside Kubelet mode that is before the pod object
	// was created.
	ListeningAt time.Time
	// InitialisedAt is when ReadinessPath began answering 200; outside
	// Kubelet mode (and in it without InitDelay or ManualInit) it is
	// ListeningAt.
	InitialisedAt time.Time
}

// Sim is a simulated sandbox controller and kubelet. Create it with New,
// start it with Run, stop it with Close.
type Sim struct {
	opts  Options
	logf  func(string, ...any)
	cs    kubernetes.Interface
	dyn   dynamic.Interface
	disco discovery.DiscoveryInterface
	ports []uint16
	gvr   schema.GroupVersionResource
	queue workqueue.TypedRateLimitingInterface[key]

	sandboxInformers map[string]cache.SharedIndexInformer // by namespace; "" = all
	podInformers     map[string]cache.SharedIndexInformer

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // informers and workers

	kubelet     *Kubelet       // Options.Kubelet with its defaults; nil: not in Kubelet mode
	probeClient *http.Client   // the kubelet's HTTP probes
	kubeletWG   sync.WaitGroup // the kubelets' probers

	mu        sync.Mutex
	started   bool
	closed    bool
	nextIP    netip.Addr
	states    map[key]*sandboxState
	warm      map[key]*podState // unclaimed warm-pool pods by namespace/pod name
	pods      map[types.UID]*podState
	replaced  map[types.UID]*podState // ReplacePod's pods, serving until StopPod or Close
	removed   map[types.UID]bool      // deleted by the sim, until the informer sees them go
	published map[key]*podState       // current pod per sandbox, for Pod/PodIP/WaitPod
	infos     map[key]PodInfo         // what publish saw of it
	stats     map[string]*podCounters // every pod's, by "namespace/name"
	changed   chan struct{}           // closed and replaced when published changes

	closeOnce sync.Once
}

// New checks opts and makes the clients; Run starts the sim.
func New(opts Options) (*Sim, error) {
	if opts.Config == nil {
		return nil, errors.New("sim: Options.Config is required")
	}
	switch opts.Version {
	case "", "v1beta1", "v1alpha1":
	default:
		return nil, fmt.Errorf("sim: Options.Version %q: want v1beta1 or v1alpha1", opts.Version)
	}
	if !opts.IPBase.IsValid() {
		opts.IPBase = DefaultIPBase
	}
	if !opts.IPBase.Is4() || !opts.IPBase.IsLoopback() {
		return nil, fmt.Errorf("sim: Options.IPBase %s is not an IPv4 loopback address", opts.IPBase)
	}
	ports := slices.Clone(opts.Ports)
	if len(ports) == 0 {
		ports = []uint16{DefaultPort}
	}
	var kubelet *Kubelet
	if opts.Kubelet != nil {
		k, err := opts.Kubelet.withDefaults(ports, opts.GRPCPorts)
		if err != nil {
			return nil, fmt.Errorf("sim: Options.Kubelet: %w", err)
		}
		kubelet = &k
	}
	cfg := rest.CopyConfig(opts.Config)
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		cfg.QPS, cfg.Burst = 200, 400 // client-go's 5 QPS would pace the sim, not the system under test
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	s := &Sim{
		opts:      opts,
		logf:      opts.Logf,
		cs:        cs,
		dyn:       dyn,
		disco:     disco,
		ports:     ports,
		kubelet:   kubelet,
		nextIP:    opts.IPBase,
		states:    map[key]*sandboxState{},
		warm:      map[key]*podState{},
		pods:      map[types.UID]*podState{},
		replaced:  map[types.UID]*podState{},
		removed:   map[types.UID]bool{},
		published: map[key]*podState{},
		infos:     map[key]PodInfo{},
		stats:     map[string]*podCounters{},
		changed:   make(chan struct{}),
	}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	if kubelet != nil {
		s.probeClient = newProbeClient()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[key](),
		workqueue.TypedRateLimitingQueueConfig[key]{Name: "sim"})
	return s, nil
}

// Version is the Sandbox API version the sim uses; valid after Run.
func (s *Sim) Version() string { return s.gvr.Version }

// Run picks the API version, starts the informers and the workers, and
// returns once the caches are synced; the sim then works until ctx ends
// or Close is called. Run may be called once.
func (s *Sim) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("sim: Run called twice or after Close")
	}
	s.started = true
	s.mu.Unlock()

	version := s.opts.Version
	if version == "" {
		version = "v1alpha1"
		if list, err := s.disco.ServerResourcesForGroupVersion(Group + "/v1beta1"); err == nil &&
			slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == "sandboxes" }) {
			version = "v1beta1"
		}
	}
	s.gvr = schema.GroupVersionResource{Group: Group, Version: version, Resource: "sandboxes"}

	namespaces := s.opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	s.sandboxInformers = map[string]cache.SharedIndexInformer{}
	s.podInformers = map[string]cache.SharedIndexInformer{}
	var synced []cache.InformerSynced
	for _, ns := range namespaces {
		si := dynamicinformer.NewFilteredDynamicInformer(s.dyn, s.gvr, ns, 0, cache.Indexers{}, nil).Informer()
		if _, err := si.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    s.onSandbox,
			UpdateFunc: func(_, obj any) { s.onSandbox(obj) },
			DeleteFunc: s.onSandbox,
		}); err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		pi := coreinformers.NewFilteredPodInformer(s.cs, ns, 0,
			cache.Indexers{nameHashIndex: podNameHashIndex},
			func(o *metav1.ListOptions) { o.LabelSelector = LabelNameHash })
		if _, err := pi.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.onPod(obj, false) },
			UpdateFunc: func(_, obj any) { s.onPod(obj, false) },
			DeleteFunc: func(obj any) { s.onPod(obj, true) },
		}); err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		s.sandboxInformers[ns], s.podInformers[ns] = si, pi
		synced = append(synced, si.HasSynced, pi.HasSynced)
		for _, inf := range []cache.SharedIndexInformer{si, pi} {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				inf.RunWithContext(s.ctx)
			}()
		}
	}
	stop := context.AfterFunc(ctx, s.Close)
	syncCtx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	context.AfterFunc(ctx, cancel)
	if !cache.WaitForCacheSync(syncCtx.Done(), synced...) {
		stop()
		s.Close()
		return fmt.Errorf("sim: informers did not sync: %w", errors.Join(ctx.Err(), s.ctx.Err()))
	}
	for range workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for s.processNext() {
			}
		}()
	}
	s.logf("sim: running (Sandbox %s, namespaces %v)", version, s.opts.Namespaces)
	return nil
}

// Close stops the workers and informers and every backend (pods stay in
// the API server). It is safe to call more than once and from any
// goroutine.
func (s *Sim) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		s.queue.ShutDown()
		s.wg.Wait()
		s.kubeletWG.Wait() // started by workers only, which are done
		s.mu.Lock()
		s.closed = true
		pods := make([]*podState, 0, len(s.pods)+len(s.replaced))
		for _, p := range s.pods {
			pods = append(pods, p)
		}
		for _, p := range s.replaced {
			pods = append(pods, p)
		}
		s.pods = map[types.UID]*podState{}
		s.replaced = map[types.UID]*podState{}
		s.warm = map[key]*podState{}
		s.mu.Unlock()
		for _, p := range pods {
			p.stop()
		}
		if s.probeClient != nil {
			s.probeClient.CloseIdleConnections()
		}
	})
}

// onSandbox enqueues a changed Sandbox.
func (s *Sim) onSandbox(obj any) {
	k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	ns, name, err := cache.SplitMetaNamespaceKey(k)
	if err != nil {
		return
	}
	s.queue.Add(key{namespace: ns, name: name})
}

// onPod notes a deleted (or deleting) pod of the sim, and enqueues its
// sandbox, or the warm-pool pod itself.
func (s *Sim) onPod(obj any, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, deleted = t.Obj, true
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if deleted || pod.DeletionTimestamp != nil {
		s.mu.Lock()
		p := s.pods[pod.UID]
		if deleted {
			delete(s.removed, pod.UID)
		}
		s.mu.Unlock()
		if p != nil {
			p.markGone()
		}
	}
	if owner := sandboxOwner(pod); owner != nil {
		s.queue.Add(key{namespace: pod.Namespace, name: owner.Name})
		return
	}
	if _, ok := pod.Labels[LabelWarmPool]; ok {
		s.queue.Add(key{namespace: pod.Namespace, name: pod.Name, pod: true})
	}
}

// sandboxOwner is the pod's controller reference to a Sandbox, if any.
func sandboxOwner(pod *corev1.Pod) *metav1.OwnerReference {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "Sandbox" {
		return nil
	}
	if gv, err := schema.ParseGroupVersion(ref.APIVersion); err != nil || gv.Group != Group {
		return nil
	}
	return ref
}

func podNameHashIndex(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	return []string{pod.Namespace + "/" + pod.Labels[LabelNameHash]}, nil
}

func (s *Sim) processNext() bool {
	k, shutdown := s.queue.Get()
	if shutdown {
		return false
	}
	defer s.queue.Done(k)
	var err error
	if k.pod {
		err = s.reconcileWarmPod(s.ctx, k)
	} else {
		err = s.reconcileSandbox(s.ctx, k)
	}
	if err != nil {
		if s.ctx.Err() == nil {
			s.logf("sim: %s: %v (retrying)", k, err)
			s.queue.AddRateLimited(k)
		}
		return true
	}
	s.queue.Forget(k)
	return true
}

// informerFor returns the informer of ns from m.
func informerFor(m map[string]cache.SharedIndexInformer, ns string) cache.SharedIndexInformer {
	if inf, ok := m[metav1.NamespaceAll]; ok {
		return inf
	}
	return m[ns]
}

// cachedSandbox returns the Sandbox from the informer's cache.
func (s *Sim) cachedSandbox(k key) (*unstructured.Unstructured, bool) {
	inf := informerFor(s.sandboxInformers, k.namespace)
	if inf == nil {
		return nil, false
	}
	obj, ok, err := inf.GetStore().GetByKey(k.String())
	if err != nil || !ok {
		return nil, false
	}
	u, ok := obj.(*unstructured.Unstructured)
	return u, ok
}

// state returns the state of a sandbox, made if missing.
func (s *Sim) state(k key) *sandboxState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.states[k]
	if st == nil {
		st = &sandboxState{}
		s.states[k] = st
	}
	return st
}

// publish records the current pod of a sandbox (nil: none) as its owner
// (who holds its lock) sees it now, and wakes WaitPod.
func (s *Sim) publish(k key, p *podState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == nil {
		delete(s.published, k)
		delete(s.infos, k)
	} else {
		info := PodInfo{Name: p.name, UID: p.uid, IP: p.ip, Ready: p.ready, ReadySentAt: p.readySentAt, AddressSentAt: p.addressSentAt}
		if !p.kubelet {
			info.AddressSentAt = p.readySentAt
		}
		s.published[k], s.infos[k] = p, info
	}
	s.broadcastLocked()
}

// broadcast wakes WaitPod: a published pod changed (its backend listens,
// or is initialised).
func (s *Sim) broadcast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broadcastLocked()
}

func (s *Sim) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// podInfoLocked is the published pod of k with its backend's times as
// they are now (the caller holds s.mu).
func (s *Sim) podInfoLocked(k key) (PodInfo, bool) {
	p, ok := s.published[k]
	if !ok {
		return PodInfo{}, false
	}
	info := s.infos[k]
	info.ListeningAt, info.InitialisedAt = p.backend.times()
	return info, true
}

// Pod returns the name and UID of the sandbox's current pod.
func (s *Sim) Pod(namespace, sandbox string) (name string, uid types.UID, ok bool) {
	info, ok := s.PodInfo(namespace, sandbox)
	return info.Name, info.UID, ok
}

// PodIP returns the address of the sandbox's current pod (its backend is
// listening, though it may not be Ready yet; in Kubelet mode it may not
// listen yet either).
func (s *Sim) PodIP(namespace, sandbox string) (netip.Addr, bool) {
	info, ok := s.PodInfo(namespace, sandbox)
	return info.IP, ok
}

// PodInfo returns the sandbox's current pod.
func (s *Sim) PodInfo(namespace, sandbox string) (PodInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.podInfoLocked(key{namespace: namespace, name: sandbox})
}

// WaitPod waits until the sandbox has a pod for which cond (nil: any pod)
// is true, and returns it.
func (s *Sim) WaitPod(ctx context.Context, namespace, sandbox string, cond func(PodInfo) bool) (PodInfo, error) {
	k := key{namespace: namespace, name: sandbox}
	for {
		s.mu.Lock()
		info, ok := s.podInfoLocked(k)
		ch := s.changed
		s.mu.Unlock()
		if ok && (cond == nil || cond(info)) {
			return info, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return PodInfo{}, fmt.Errorf("sim: wait for pod of %s: %w (now %+v)", k, ctx.Err(), info)
		case <-s.ctx.Done():
			return PodInfo{}, errors.New("sim: closed")
		}
	}
}
