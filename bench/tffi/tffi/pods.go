package tffi

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sandbox-router/sandbox-router/resolver/kube"
)

// podObs is what the watch saw of one pod of the sandbox, and when it
// first saw it.
type podObs struct {
	name                                 string
	uid                                  types.UID
	seen, addressSeen, readySeen, goneAt time.Time
}

// podWatch records the pods of one sandbox as a Pod informer of the
// namespace sees them: the pods that carry the sandbox-name-hash label (as
// the router lists them) and name the Sandbox as their controller.
type podWatch struct {
	sandbox string
	uid     types.UID // the Sandbox's

	mu      sync.Mutex
	pods    map[types.UID]*podObs
	changed chan struct{} // closed and replaced at every change
}

// watchPods starts the watch and returns once its cache has synced; it
// stops with ctx.
func watchPods(ctx context.Context, cs kubernetes.Interface, namespace, sandbox string, uid types.UID) (*podWatch, error) {
	w := &podWatch{sandbox: sandbox, uid: uid, pods: map[types.UID]*podObs{}, changed: make(chan struct{})}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = kube.SandboxNameHashLabel }))
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.record(obj, false) },
		UpdateFunc: func(_, obj any) { w.record(obj, false) },
		DeleteFunc: func(obj any) { w.record(obj, true) },
	}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("the Pod watch of namespace %s did not sync: %w", namespace, context.Cause(ctx))
	}
	return w, nil
}

func (w *podWatch) record(obj any, deleted bool) {
	now := time.Now()
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok || !w.owns(pod) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.pods[pod.UID]
	if o == nil {
		o = &podObs{name: pod.Name, uid: pod.UID, seen: now}
		w.pods[pod.UID] = o
	}
	if o.addressSeen.IsZero() && pod.Status.PodIP != "" {
		o.addressSeen = now
	}
	if o.readySeen.IsZero() && podReady(pod) {
		o.readySeen = now
	}
	if deleted && o.goneAt.IsZero() {
		o.goneAt = now
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

// owns reports whether the pod is the sandbox's: its controller is the
// Sandbox (by name, and by UID).
func (w *podWatch) owns(pod *corev1.Pod) bool {
	ref := metav1.GetControllerOf(pod)
	return ref != nil && ref.Kind == "Sandbox" && ref.Name == w.sandbox && (w.uid == "" || ref.UID == w.uid)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// wait returns once cond, called under the watch's lock with every pod
// seen so far, holds.
func (w *podWatch) wait(ctx context.Context, cond func(pods map[types.UID]*podObs) bool) error {
	for {
		w.mu.Lock()
		ok := cond(w.pods)
		ch := w.changed
		w.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// waitGone waits until no pod of the sandbox is left (deleted, not only
// terminating), and returns the pods seen so far: every later pod is new.
func (w *podWatch) waitGone(ctx context.Context) (map[types.UID]bool, error) {
	var old map[types.UID]bool
	err := w.wait(ctx, func(pods map[types.UID]*podObs) bool {
		old = make(map[types.UID]bool, len(pods))
		for uid, o := range pods {
			if o.goneAt.IsZero() {
				return false
			}
			old[uid] = true
		}
		return true
	})
	return old, err
}

// waitNewPod waits until a pod not in old satisfies cond, and returns it.
func (w *podWatch) waitNewPod(ctx context.Context, old map[types.UID]bool, cond func(podObs) bool) (podObs, error) {
	var got podObs
	err := w.wait(ctx, func(pods map[types.UID]*podObs) bool {
		o, ok := firstNew(pods, old)
		got = o
		return ok && cond(o)
	})
	return got, err
}

// firstNew is the earliest seen pod not in old.
func firstNew(pods map[types.UID]*podObs, old map[types.UID]bool) (podObs, bool) {
	var first *podObs
	for uid, o := range pods {
		if !old[uid] && (first == nil || o.seen.Before(first.seen)) {
			first = o
		}
	}
	if first == nil {
		return podObs{}, false
	}
	return *first, true
}
