package sdk

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

var (
	claimGVR   = schema.GroupVersionResource{Group: "extensions.agents.x-k8s.io", Version: "v1beta1", Resource: "sandboxclaims"}
	sandboxGVR = schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}
)

// claimController plays the part of upstream's extensions controller that
// the SDK waits on, for a cold start (no warm pool): for each SandboxClaim
// of its namespace it creates a Sandbox of the claim's name and writes that
// name into the claim's status.sandbox.name; when a claim is deleted, it
// deletes the Sandbox (the test API server has no garbage collector to
// follow an ownerReference). The sim does the rest: pod, address, Ready.
type claimController struct {
	dyn      dynamic.Interface
	ns       string
	informer cache.SharedIndexInformer
	queue    workqueue.TypedRateLimitingInterface[string]
	logf     func(string, ...any)
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// startClaimController runs the controller until stop; it returns once its
// cache is synced.
func startClaimController(ctx context.Context, dyn dynamic.Interface, ns string, logf func(string, ...any)) (*claimController, error) {
	c := &claimController{
		dyn:  dyn,
		ns:   ns,
		logf: logf,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "claims"}),
	}
	c.informer = dynamicinformer.NewFilteredDynamicInformer(dyn, claimGVR, ns, 0, cache.Indexers{}, nil).Informer()
	enqueue := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(k)
		}
	}
	if _, err := c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue,
	}); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Go(func() { c.informer.RunWithContext(runCtx) })
	if !cache.WaitForCacheSync(ctx.Done(), c.informer.HasSynced) {
		c.stop()
		return nil, fmt.Errorf("claim controller: cache not synced: %w", ctx.Err())
	}
	c.wg.Go(func() {
		for c.next(runCtx) {
		}
	})
	return c, nil
}

func (c *claimController) stop() {
	c.cancel()
	c.queue.ShutDown()
	c.wg.Wait()
}

func (c *claimController) next(ctx context.Context) bool {
	k, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(k)
	if err := c.reconcile(ctx, k); err != nil {
		if ctx.Err() == nil {
			c.logf("claim controller: %s: %v (retrying)", k, err)
			c.queue.AddRateLimited(k)
		}
		return true
	}
	c.queue.Forget(k)
	return true
}

// reconcile makes the world match the claim k (namespace/name), level
// triggered: whatever events it missed, it reads the newest claim.
func (c *claimController) reconcile(ctx context.Context, k string) error {
	_, name, err := cache.SplitMetaNamespaceKey(k)
	if err != nil {
		return nil
	}
	sandboxes := c.dyn.Resource(sandboxGVR).Namespace(c.ns)
	obj, exists, err := c.informer.GetStore().GetByKey(k)
	if err != nil {
		return err
	}
	if !exists {
		if err := sandboxes.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	}
	claim := obj.(*unstructured.Unstructured)
	if claim.GetDeletionTimestamp() != nil {
		return nil
	}
	sb := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": sandboxGVR.GroupVersion().String(), "kind": "Sandbox",
		"metadata": map[string]any{"name": name, "namespace": c.ns},
		"spec":     map[string]any{"operatingMode": "Running"},
	}}
	if _, err := sandboxes.Create(ctx, sb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if got, _, _ := unstructured.NestedString(claim.Object, "status", "sandbox", "name"); got == name {
		return nil
	}
	claim = claim.DeepCopy()
	if err := unstructured.SetNestedField(claim.Object, name, "status", "sandbox", "name"); err != nil {
		return err
	}
	_, err = c.dyn.Resource(claimGVR).Namespace(c.ns).UpdateStatus(ctx, claim, metav1.UpdateOptions{})
	return err // a conflict retries with the newer claim
}
