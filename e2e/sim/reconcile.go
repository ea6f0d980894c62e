package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// reconcileSandbox brings the sandbox's pod, backend and status in line
// with its spec. The workqueue never runs two reconciles of a key at once;
// st.mu also keeps MarkReady and RestartPod out.
func (s *Sim) reconcileSandbox(ctx context.Context, k key) error {
	st := s.state(k)
	st.mu.Lock()
	defer st.mu.Unlock()

	u, exists := s.cachedSandbox(k)
	if !exists {
		var errs []error
		if st.pod != nil {
			errs = append(errs, s.dropPod(ctx, k, st))
		}
		errs = append(errs, s.deleteStrayPods(ctx, k, "", nil))
		if err := errors.Join(errs...); err != nil {
			return err
		}
		s.mu.Lock()
		if s.states[k] == st {
			delete(s.states, k)
		}
		s.mu.Unlock()
		return nil
	}
	v := readSandbox(u)

	// A pod that someone deleted, or one of an earlier object of the same
	// name, is over: stop its backend and make sure the object is gone.
	if p := st.pod; p != nil && (p.isGone() || st.uid != v.uid) {
		if err := s.dropPod(ctx, k, st); err != nil {
			return err
		}
	}
	st.uid = v.uid
	if err := s.deleteStrayPods(ctx, k, v.uid, st.pod); err != nil {
		return err
	}

	if !v.shouldRun() {
		if st.pod != nil {
			if err := s.dropPod(ctx, k, st); err != nil {
				return err
			}
		}
		switch {
		case v.deleting:
			return nil
		case v.finished:
			return s.writeStatus(ctx, v, desiredStatus{readyReason: "Finished", readyMessage: "the sandbox has finished"})
		default:
			return s.writeStatus(ctx, v, desiredStatus{
				readyReason: "Suspended", readyMessage: v.suspendedBy,
				suspended: true, suspendedReason: "Suspended", suspendedMessage: v.suspendedBy,
				setSuspended: true,
			})
		}
	}

	if st.pod == nil {
		if v.adopt != "" {
			if err := s.adopt(ctx, k, st, v); err != nil {
				return err
			}
		}
		if st.pod == nil {
			p, err := s.createPod(ctx, k.namespace, k.name+"-"+suffix(), k.name,
				map[string]string{LabelNameHash: NameHash(k.name)}, s.ownerRef(v), s.kubelet != nil)
			if err != nil {
				return err
			}
			st.pod = p
			s.publish(k, p)
		}
	}

	// A pod that is not Ready yet (new, or after a restart), or whose
	// Ready the controller has not reacted to yet, is reported not Ready
	// first, whatever the start delay, so a watcher always sees the old
	// address withdrawn before the new one appears.
	p := st.pod
	if !p.ready || time.Until(p.statusDue) > 0 {
		if err := s.writeStatus(ctx, v, desiredStatus{
			readyReason: "PodNotReady", readyMessage: "pod " + p.name + " is starting",
			suspendedReason: "Running", setSuspended: true,
		}); err != nil {
			return err
		}
	}
	if !p.ready {
		switch {
		case p.kubelet:
			// The pod's kubelet writes it Ready and enqueues the
			// sandbox again (kubelet.go).
			return s.startPod(ctx, k, st, p)
		case s.opts.ManualReady:
			return nil
		}
		if wait := time.Until(p.startedAt); wait > 0 {
			s.queue.AddAfter(k, wait)
			return nil
		}
		if _, err := s.writePodReady(ctx, p); err != nil {
			return err
		}
		s.publish(k, p)
	}
	if wait := time.Until(p.statusDue); wait > 0 {
		s.queue.AddAfter(k, wait)
		return nil
	}
	return s.writeStatus(ctx, v, desiredStatus{
		podIP: p.ip, ready: true, readyReason: "PodReady", readyMessage: "pod " + p.name + " is ready",
		suspendedReason: "Running", setSuspended: true,
	})
}

// dropPod removes the sandbox's current pod.
func (s *Sim) dropPod(ctx context.Context, k key, st *sandboxState) error {
	p := st.pod
	st.pod = nil
	s.publish(k, nil)
	return s.removePod(ctx, p)
}

// deleteStrayPods deletes the pods in the informer's cache that name the
// sandbox as their controller but are not its current pod: pods of an
// earlier object of the same name (uid differs; empty uid: all), or pods
// a previous sim left without a backend.
func (s *Sim) deleteStrayPods(ctx context.Context, k key, uid types.UID, current *podState) error {
	inf := informerFor(s.podInformers, k.namespace)
	if inf == nil {
		return nil
	}
	objs, err := inf.GetIndexer().ByIndex(nameHashIndex, k.namespace+"/"+NameHash(k.name))
	if err != nil {
		return err
	}
	var errs []error
	for _, obj := range objs {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			continue
		}
		owner := sandboxOwner(pod)
		if owner == nil || owner.Name != k.name {
			continue
		}
		if current != nil && pod.UID == current.uid {
			continue
		}
		s.mu.Lock()
		p, removed, replaced := s.pods[pod.UID], s.removed[pod.UID], s.replaced[pod.UID] != nil
		delete(s.pods, pod.UID)
		s.mu.Unlock()
		if removed || replaced {
			// Deleted already, the cache has not caught up; or
			// terminating after ReplacePod until StopPod.
			continue
		}
		if p != nil {
			p.stop()
		} else {
			s.logf("sim: pod %s/%s of sandbox %s has no backend here; deleting it", pod.Namespace, pod.Name, k)
		}
		errs = append(errs, s.forceDelete(ctx, pod.Namespace, pod.Name, pod.UID))
	}
	return errors.Join(errs...)
}

// adopt gives the sandbox the warm-pool pod its annotation names, if the
// sim has it. Without such a pod the caller creates a new one.
func (s *Sim) adopt(ctx context.Context, k key, st *sandboxState, v sandboxView) error {
	wk := key{namespace: k.namespace, name: v.adopt, pod: true}
	s.mu.Lock()
	p := s.warm[wk]
	delete(s.warm, wk)
	s.mu.Unlock()
	if p == nil || p.isGone() {
		s.logf("sim: sandbox %s: no warm-pool pod %q to adopt; creating a pod", k, v.adopt)
		if p != nil {
			return s.removePod(ctx, p)
		}
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"uid":             p.uid, // a precondition: the pod must be the same object
		"labels":          map[string]any{LabelWarmPool: nil, LabelNameHash: NameHash(k.name)},
		"ownerReferences": []any{s.ownerRef(v)},
	}})
	if err != nil {
		return err
	}
	if _, err := s.cs.CoreV1().Pods(k.namespace).Patch(ctx, p.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			s.logf("sim: sandbox %s: warm-pool pod %q is gone; creating a pod", k, v.adopt)
			return s.removePod(ctx, p)
		}
		s.mu.Lock()
		s.warm[wk] = p // try again on the next reconcile
		s.mu.Unlock()
		return fmt.Errorf("adopt pod %s/%s: %w", k.namespace, p.name, err)
	}
	p.backend.setSandbox(k.name)
	if s.kubelet != nil {
		// The controller reacts to the adoption as to a Ready write.
		p.statusDue = time.Now().Add(s.kubelet.SandboxStatusDelay)
	}
	st.pod = p
	s.publish(k, p)
	s.logf("sim: sandbox %s adopted warm-pool pod %s (%s)", k, p.name, p.ip)
	return nil
}

// reconcileWarmPod removes an unclaimed warm-pool pod that someone deleted.
func (s *Sim) reconcileWarmPod(ctx context.Context, k key) error {
	s.mu.Lock()
	p := s.warm[k]
	if p != nil && p.isGone() {
		delete(s.warm, k)
	} else {
		p = nil
	}
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return s.removePod(ctx, p)
}

// desiredStatus is the Sandbox status the sim wants: Ready with podIP, or
// not Ready for a reason; Suspended set only when setSuspended.
type desiredStatus struct {
	podIP                             netip.Addr // zero: no status.podIPs
	ready                             bool
	readyReason, readyMessage         string
	setSuspended, suspended           bool
	suspendedReason, suspendedMessage string
}

// writeStatus writes the Sandbox status through the status subresource
// when it differs from the API server's (read fresh, never from the cache,
// which may not show the sim's last write yet). Conditions of other types
// (Finished, ...) and unknown status fields are kept; lastTransitionTime
// changes only with a condition's status.
func (s *Sim) writeStatus(ctx context.Context, v sandboxView, d desiredStatus) error {
	res := s.dyn.Resource(s.gvr).Namespace(v.namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := res.Get(ctx, v.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if u.GetUID() != v.uid {
			return nil // replaced; its own reconcile follows
		}
		old, _, _ := unstructured.NestedMap(u.Object, "status")
		status := runtime.DeepCopyJSON(old)
		if status == nil {
			status = map[string]any{}
		}
		if d.podIP.IsValid() {
			status["podIPs"] = []any{d.podIP.String()}
		} else {
			delete(status, "podIPs")
		}
		status["service"] = v.name
		status["serviceFQDN"] = v.name + "." + v.namespace + ".svc.cluster.local"
		now := time.Now().UTC().Format(time.RFC3339)
		conds, _ := status["conditions"].([]any)
		conds = setCondition(conds, "Ready", d.ready, d.readyReason, d.readyMessage, v.generation, now)
		if d.setSuspended {
			conds = setCondition(conds, "Suspended", d.suspended, d.suspendedReason, d.suspendedMessage, v.generation, now)
		}
		status["conditions"] = conds
		if reflect.DeepEqual(old, status) {
			return nil
		}
		u.Object["status"] = status
		if _, err := res.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
			return err
		}
		s.logf("sim: sandbox %s/%s status: Ready=%t (%s) podIPs=%v", v.namespace, v.name, d.ready, d.readyReason, status["podIPs"])
		return nil
	})
}

// setCondition sets a condition in an unstructured conditions list,
// keeping lastTransitionTime when the status does not change.
func setCondition(conds []any, typ string, status bool, reason, message string, generation int64, now string) []any {
	st := "False"
	if status {
		st = "True"
	}
	c := map[string]any{
		"type": typ, "status": st, "reason": reason, "message": message,
		"lastTransitionTime": now, "observedGeneration": generation,
	}
	for i, old := range conds {
		m, _ := old.(map[string]any)
		if m["type"] != typ {
			continue
		}
		if m["status"] == st {
			if t, ok := m["lastTransitionTime"].(string); ok {
				c["lastTransitionTime"] = t
			}
		}
		out := append([]any(nil), conds...)
		out[i] = c
		return out
	}
	return append(append([]any(nil), conds...), c)
}

// CreateWarmPoolPod creates an unclaimed warm-pool pod in namespace with a
// running backend and, after StartDelay (ManualReady and Kubelet do not
// apply), its Ready status. A Sandbox annotated with AnnotationAdopt:
// podName adopts it.
func (s *Sim) CreateWarmPoolPod(ctx context.Context, namespace, pool string) (podName string, uid types.UID, ip netip.Addr, err error) {
	name := pool + "-" + suffix()
	p, err := s.createPod(ctx, namespace, name, "",
		map[string]string{LabelWarmPool: pool, LabelNameHash: NameHash(name)}, nil, false)
	if err != nil {
		return "", "", netip.Addr{}, fmt.Errorf("sim: %w", err)
	}
	fail := func(err error) (string, types.UID, netip.Addr, error) {
		return "", "", netip.Addr{}, errors.Join(fmt.Errorf("sim: warm-pool pod %s/%s: %w", namespace, name, err), s.removePod(context.WithoutCancel(ctx), p))
	}
	t := time.NewTimer(time.Until(p.startedAt))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-s.ctx.Done():
		return fail(errors.New("closed"))
	}
	if _, err := s.writePodReady(ctx, p); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	s.warm[key{namespace: namespace, name: name, pod: true}] = p
	s.mu.Unlock()
	// A deletion seen while it started is handled now that it is listed.
	s.queue.Add(key{namespace: namespace, name: name, pod: true})
	return name, p.uid, p.ip, nil
}

// RestartPod deletes the sandbox's current pod and stops its backend, as
// when a pod dies; the sandbox's reconcile then writes it not Ready and
// creates a new pod with a new address.
func (s *Sim) RestartPod(ctx context.Context, namespace, sandbox string) error {
	k := key{namespace: namespace, name: sandbox}
	s.mu.Lock()
	st := s.states[k]
	s.mu.Unlock()
	if st == nil {
		return fmt.Errorf("sim: sandbox %s has no pod", k)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pod == nil {
		return fmt.Errorf("sim: sandbox %s has no pod", k)
	}
	err := s.dropPod(ctx, k, st)
	s.queue.Add(k)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	return nil
}

// MarkReady (with Options.ManualReady) writes the Ready status of the
// sandbox's current pod and returns when that write request was sent; the
// Sandbox status follows in the background.
func (s *Sim) MarkReady(ctx context.Context, namespace, sandbox string) (sentAt time.Time, err error) {
	k := key{namespace: namespace, name: sandbox}
	s.mu.Lock()
	st := s.states[k]
	s.mu.Unlock()
	if st == nil {
		return time.Time{}, fmt.Errorf("sim: sandbox %s has no pod", k)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	p := st.pod
	switch {
	case p == nil:
		return time.Time{}, fmt.Errorf("sim: sandbox %s has no pod", k)
	case p.ready:
		return time.Time{}, fmt.Errorf("sim: pod %s of sandbox %s is already Ready", p.name, k)
	}
	sentAt, err = s.writePodReady(ctx, p)
	if err != nil {
		return time.Time{}, fmt.Errorf("sim: %w", err)
	}
	s.publish(k, p)
	s.queue.Add(k)
	return sentAt, nil
}
