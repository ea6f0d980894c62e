package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Options configures a Resolver.
type Options struct {
	// Config reaches the API server. The resolver only reads: it needs
	// get/list/watch on sandboxes and pods, and discovery.
	Config *rest.Config
	// Namespaces limits the watch to these namespaces (one informer set
	// each, so namespaced RBAC is enough); empty watches all.
	Namespaces []string
	// Versions limits the Sandbox versions watched (v1beta1, v1alpha1);
	// empty watches every version the API server serves.
	Versions []string
	// Logger receives discovery and informer lifecycle messages.
	Logger *slog.Logger
	// ObserveLatency, when set, receives for every change that altered a
	// routing answer the time from the event's decoding to its visibility
	// to lookups.
	ObserveLatency func(time.Duration)
	// DiscoveryRetry is the wait between discovery attempts while the API
	// server is unreachable or serves no Sandbox version (default 5 s).
	DiscoveryRetry time.Duration
}

// Resolver answers sandbox lookups from informer caches.
type Resolver struct {
	opts   Options
	log    *slog.Logger
	start  time.Time
	xform  *transformer
	idx    *index
	notify *notifier
	synced atomic.Bool
	// syncedC is closed once synced is set.
	syncedC chan struct{}
	// invalidAnnotations counts lifecycle annotations found invalid.
	invalidAnnotations atomic.Uint64

	mu       sync.Mutex
	versions []apiVersion // watched, once discovery succeeded
}

// New checks opts and builds the resolver; Run starts it.
func New(opts Options) (*Resolver, error) {
	if opts.Config == nil {
		return nil, errors.New("kube resolver: no API server config")
	}
	for _, v := range opts.Versions {
		if _, ok := parseVersion(v); !ok {
			return nil, fmt.Errorf("kube resolver: unknown Sandbox version %q (want v1beta1 or v1alpha1)", v)
		}
	}
	return newResolver(opts), nil
}

func newResolver(opts Options) *Resolver {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DiscoveryRetry <= 0 {
		opts.DiscoveryRetry = 5 * time.Second
	}
	r := &Resolver{opts: opts, log: opts.Logger, start: time.Now(), notify: newNotifier(), syncedC: make(chan struct{})}
	now := func() int64 { return int64(time.Since(r.start)) }
	r.xform = newTransformer(now)
	r.idx = newIndex(r.notify, now, opts.ObserveLatency)
	r.idx.invalid = r.reportInvalid
	return r
}

func parseVersion(s string) (apiVersion, bool) {
	for i, name := range versionNames {
		if name == s {
			return apiVersion(i), true
		}
	}
	return 0, false
}

// Lookup answers from the cache. A lookup by UID finds a sandbox by its
// UID or an unclaimed warm-pool pod by the pod's UID, in the key's
// namespace; the caller checks that the name it was given matches.
func (r *Resolver) Lookup(k resolver.Key) resolver.Result { return r.idx.lookup(k) }

// Synced reports whether every informer has delivered its initial list.
func (r *Resolver) Synced() bool { return r.synced.Load() }

// SyncedC is closed when Synced becomes true.
func (r *Resolver) SyncedC() <-chan struct{} { return r.syncedC }

// Changed returns a channel that is closed at the next change of the
// sandbox's routing answer or of its idle or hold timeout (see Lifecycle;
// not of its last activity), and a function that releases it (call it
// when no longer waiting). Subscribe first, then Lookup, then wait: a
// change in between closes the channel, so none is missed.
func (r *Resolver) Changed(k resolver.Key) (<-chan struct{}, func()) { return r.notify.wait(k) }

// Subscribe returns a feed of every change, in the sense of Changed;
// Close it when done.
func (r *Resolver) Subscribe() resolver.Feed { return r.notify.subscribe() }

// Snapshot returns the current answer for every sandbox and warm-pool pod
// that routes somewhere (not unknown).
func (r *Resolver) Snapshot() []resolver.Result { return r.idx.snapshot() }

// Versions returns the Sandbox versions watched (empty until discovery).
func (r *Resolver) Versions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.versions))
	for i, v := range r.versions {
		out[i] = v.String()
	}
	return out
}

// Run discovers the served Sandbox versions, runs the informers and blocks
// until ctx ends. While the API server is unreachable the informers keep
// the last state and retry with client-go's backoff; on reconnect they
// resume the watch, or list again when the resource version is too old.
func (r *Resolver) Run(ctx context.Context) error {
	dyn, pods, err := r.clients()
	if err != nil {
		return err
	}
	versions, err := r.discover(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.versions = versions
	r.mu.Unlock()

	namespaces := r.opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var informers []cache.SharedIndexInformer
	var synced []cache.DoneChecker
	for _, ns := range namespaces {
		for _, v := range versions {
			gvr := schema.GroupVersionResource{Group: Group, Version: v.String(), Resource: "sandboxes"}
			inf := dynamicinformer.NewFilteredDynamicInformer(dyn, gvr, ns, 0, cache.Indexers{}, nil).Informer()
			reg, err := r.watchSandboxes(inf, v)
			if err != nil {
				return err
			}
			informers, synced = append(informers, inf), append(synced, reg.HasSyncedChecker())
		}
		inf := podInformer(pods, ns)
		reg, err := r.watchPods(inf)
		if err != nil {
			return err
		}
		informers, synced = append(informers, inf), append(synced, reg.HasSyncedChecker())
	}
	var wg sync.WaitGroup
	for _, inf := range informers {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	r.log.Info("resolver watching", "versions", r.Versions(), "namespaces", r.opts.Namespaces)
	if cache.WaitFor(ctx, "sandbox and pod caches", synced...) {
		r.synced.Store(true)
		close(r.syncedC)
		r.log.Info("resolver caches synced", "sandboxes", len(r.Snapshot()))
	}
	wg.Wait()
	return ctx.Err()
}

func (r *Resolver) clients() (dynamic.Interface, kubernetes.Interface, error) {
	dyn, err := dynamic.NewForConfig(r.opts.Config)
	if err != nil {
		return nil, nil, fmt.Errorf("kube resolver: %w", err)
	}
	// Pods are decoded from protobuf: cheaper than JSON for full pod specs,
	// and the transform drops all but a few fields anyway.
	cfg := rest.CopyConfig(r.opts.Config)
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	pods, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kube resolver: %w", err)
	}
	return dyn, pods, nil
}

// discover finds which Sandbox versions the API server serves, retrying
// while it is unreachable or serves none (the CRD not installed yet).
func (r *Resolver) discover(ctx context.Context) ([]apiVersion, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(r.opts.Config)
	if err != nil {
		return nil, fmt.Errorf("kube resolver: %w", err)
	}
	for {
		versions, err := servedVersions(dc)
		if err == nil && len(r.opts.Versions) > 0 {
			versions = slices.DeleteFunc(versions, func(v apiVersion) bool { return !slices.Contains(r.opts.Versions, v.String()) })
		}
		if err == nil && len(versions) > 0 {
			return versions, nil
		}
		if err == nil {
			err = fmt.Errorf("no Sandbox version served (want one of %v)", versionNames)
		}
		r.log.Warn("sandbox discovery failed; retrying", "error", err, "retry", r.opts.DiscoveryRetry)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(r.opts.DiscoveryRetry):
		}
	}
}

func servedVersions(dc discovery.DiscoveryInterface) ([]apiVersion, error) {
	var out []apiVersion
	for v := range numVersions {
		list, err := dc.ServerResourcesForGroupVersion(Group + "/" + v.String())
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(list.APIResources, func(res metav1.APIResource) bool { return res.Name == "sandboxes" }) {
			out = append(out, v)
		}
	}
	return out, nil
}

func podInformer(cs kubernetes.Interface, ns string) cache.SharedIndexInformer {
	selector := func(o *metav1.ListOptions) { o.LabelSelector = SandboxNameHashLabel }
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			selector(&o)
			return cs.CoreV1().Pods(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			selector(&o)
			return cs.CoreV1().Pods(ns).Watch(ctx, o)
		},
	}, cs)
	return cache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, cache.SharedIndexInformerOptions{})
}

func (r *Resolver) watchSandboxes(inf cache.SharedIndexInformer, v apiVersion) (cache.ResourceEventHandlerRegistration, error) {
	if err := inf.SetTransform(r.xform.sandboxTransform(v)); err != nil {
		return nil, err
	}
	return inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if rec, ok := obj.(*sandboxRecord); ok {
				r.idx.setSandbox(rec)
			}
		},
		UpdateFunc: func(_, obj any) {
			if rec, ok := obj.(*sandboxRecord); ok {
				r.idx.setSandbox(rec)
			}
		},
		DeleteFunc: func(obj any) {
			if rec, ok := tombstone(obj).(*sandboxRecord); ok {
				r.idx.deleteSandbox(rec)
			}
		},
	})
}

func (r *Resolver) watchPods(inf cache.SharedIndexInformer) (cache.ResourceEventHandlerRegistration, error) {
	if err := inf.SetTransform(r.xform.podTransform); err != nil {
		return nil, err
	}
	return inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if rec, ok := obj.(*podRecord); ok {
				r.idx.setPod(nil, rec)
			}
		},
		UpdateFunc: func(old, obj any) {
			prev, _ := old.(*podRecord)
			if rec, ok := obj.(*podRecord); ok {
				r.idx.setPod(prev, rec)
			}
		},
		DeleteFunc: func(obj any) {
			if rec, ok := tombstone(obj).(*podRecord); ok {
				r.idx.deletePod(rec)
			}
		},
	})
}

// tombstone unwraps the final state of an object whose deletion the watch
// missed (it was gone at the next list).
func tombstone(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}
