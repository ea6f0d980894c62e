package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

const (
	// ClaimGroup is the SandboxClaim API group.
	ClaimGroup = "extensions.agents.x-k8s.io"
	// ClaimVersion is the SandboxClaim version RunClaims reads and writes,
	// the only one of upstream agent-sandbox v1.0.1 and of ClaimCRDPath's
	// CRD.
	ClaimVersion = "v1beta1"
	// LabelClaimUID is set on a claim's Sandbox to the claim's UID, as
	// upstream's extensions controller does (its SandboxIDLabel).
	LabelClaimUID = "agents.x-k8s.io/claim-uid"

	// claimCRDFile is the CRD that ClaimCRDPath returns, in testdata.
	claimCRDFile = "extensions.agents.x-k8s.io_sandboxclaims.yaml"
	// claimWorkers is how many claims are reconciled at once.
	claimWorkers = 2
)

// ClaimGVR is the resource RunClaims watches.
var ClaimGVR = schema.GroupVersionResource{Group: ClaimGroup, Version: ClaimVersion, Resource: "sandboxclaims"}

// ClaimCRDPath returns the absolute path of the SandboxClaim CRD for the
// simulated cluster (testdata/extensions.agents.x-k8s.io_sandboxclaims.yaml
// next to this file; apply it with cluster.ApplyManifests). It is our
// own, minimal CRD, not upstream's: v1beta1, served and stored, a status
// subresource, spec.warmPoolRef.name required, everything else
// preserved. The file is found next to this source file, or, in a binary
// built with -trimpath, under e2e/sim/testdata above the working
// directory.
func ClaimCRDPath() (string, error) {
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "testdata", claimCRDFile))
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; {
			candidates = append(candidates, filepath.Join(dir, "e2e", "sim", "testdata", claimCRDFile))
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	for _, p := range candidates {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("sim: %s not found next to the sim's source or under e2e/sim/testdata above the working directory", claimCRDFile)
}

// RunClaims plays upstream's extensions controller for the SandboxClaims
// (ClaimGVR) of one namespace, for a cold start (no warm pool): for each
// claim it creates a Sandbox of the claim's name in sandboxVersion
// ("v1beta1", the default when empty, with spec.operatingMode Running;
// "v1alpha1" with spec.replicas 1), controlled by the claim (an
// ownerReference with controller and blockOwnerDeletion), labelled with
// the claim's labels and LabelClaimUID, and writes its name into the
// claim's status.sandbox.name. The sim (New, Run) then gives the Sandbox
// its pod.
//
// The rest follows the real controllers, level triggered from two
// informers (claims, and the namespace's Sandboxes, mapped to the claim
// that controls them or that has their name):
//
//   - a claim's Sandbox deleted while the claim lives is created again
//     (a new cold start);
//   - when a claim is deleted (or has a deletionTimestamp), its Sandbox
//     is deleted, as the garbage collector the test API server lacks
//     would (with a UID precondition);
//   - a Sandbox of the claim's name controlled by an earlier claim of the
//     same name is deleted, and then the new claim's made;
//   - a Sandbox of the claim's name that no claim controls is left alone
//     (logged); the claim gets its Sandbox once that one is gone.
//
// It never changes a claim's spec nor a Sandbox's spec after creating it.
// dyn needs list, watch, create and delete on sandboxes and list and
// watch on sandboxclaims and patch on sandboxclaims/status in namespace (the admin's config is
// simplest). RunClaims returns once both caches are synced; the
// controller works until stop is called (idempotent; it waits for the
// workers) or ctx ends. Run one per namespace, next to the sim.
func RunClaims(ctx context.Context, dyn dynamic.Interface, namespace string, sandboxVersion string, logf func(string, ...any)) (stop func(), err error) {
	if dyn == nil || namespace == "" {
		return nil, errors.New("sim: RunClaims needs a client and a namespace")
	}
	var running map[string]any
	switch sandboxVersion {
	case "", "v1beta1":
		sandboxVersion, running = "v1beta1", map[string]any{"operatingMode": "Running"}
	case "v1alpha1":
		running = map[string]any{"replicas": int64(1)}
	default:
		return nil, fmt.Errorf("sim: RunClaims: Sandbox version %q: want v1beta1 or v1alpha1", sandboxVersion)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c := &claims{
		dyn:        dyn,
		ns:         namespace,
		sandboxGVR: schema.GroupVersionResource{Group: Group, Version: sandboxVersion, Resource: "sandboxes"},
		running:    running,
		logf:       logf,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "claims-" + namespace}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.claimInf = dynamicinformer.NewFilteredDynamicInformer(dyn, ClaimGVR, namespace, 0, cache.Indexers{}, nil).Informer()
	c.sandboxInf = dynamicinformer.NewFilteredDynamicInformer(dyn, c.sandboxGVR, namespace, 0, cache.Indexers{}, nil).Informer()
	if _, err := c.claimInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.onClaim, UpdateFunc: func(_, obj any) { c.onClaim(obj) }, DeleteFunc: c.onClaim,
	}); err != nil {
		return nil, fmt.Errorf("sim: claims: %w", err)
	}
	if _, err := c.sandboxInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.onSandbox, UpdateFunc: func(_, obj any) { c.onSandbox(obj) }, DeleteFunc: c.onSandbox,
	}); err != nil {
		return nil, fmt.Errorf("sim: claims: %w", err)
	}
	for _, inf := range []cache.SharedIndexInformer{c.claimInf, c.sandboxInf} {
		c.wg.Go(func() { inf.RunWithContext(c.ctx) })
	}
	afterCtx := context.AfterFunc(ctx, c.stop)
	if !cache.WaitForCacheSync(c.ctx.Done(), c.claimInf.HasSynced, c.sandboxInf.HasSynced) {
		afterCtx()
		c.stop()
		return nil, fmt.Errorf("sim: claims of %s: informers did not sync: %w", namespace, ctx.Err())
	}
	for range claimWorkers {
		c.wg.Go(func() {
			for c.processNext() {
			}
		})
	}
	logf("sim: claims of %s running (Sandbox %s)", namespace, sandboxVersion)
	return func() {
		afterCtx()
		c.stop()
	}, nil
}

// claims is the controller RunClaims starts.
type claims struct {
	dyn        dynamic.Interface
	ns         string
	sandboxGVR schema.GroupVersionResource
	running    map[string]any // the spec of a new Sandbox
	logf       func(string, ...any)
	claimInf   cache.SharedIndexInformer
	sandboxInf cache.SharedIndexInformer
	queue      workqueue.TypedRateLimitingInterface[string] // claim keys, namespace/name

	ctx      context.Context // canceled by stop
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

func (c *claims) stop() {
	c.stopOnce.Do(func() {
		c.cancel()
		c.queue.ShutDown()
		c.wg.Wait()
	})
}

func (c *claims) onClaim(obj any) {
	if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(k)
	}
}

// onSandbox enqueues the claim that controls the Sandbox, and the claim
// of the Sandbox's name (which may wait for a foreign Sandbox to go).
func (c *claims) onSandbox(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	c.queue.Add(u.GetNamespace() + "/" + u.GetName())
	if ref := claimController(u); ref != nil && ref.Name != u.GetName() {
		c.queue.Add(u.GetNamespace() + "/" + ref.Name)
	}
}

func (c *claims) processNext() bool {
	k, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(k)
	if err := c.reconcile(c.ctx, k); err != nil {
		if c.ctx.Err() == nil {
			c.logf("sim: claim %s: %v (retrying)", k, err)
			c.queue.AddRateLimited(k)
		}
		return true
	}
	c.queue.Forget(k)
	return true
}

// cached returns the object of key k from an informer's store.
func cached(inf cache.SharedIndexInformer, k string) *unstructured.Unstructured {
	obj, ok, err := inf.GetStore().GetByKey(k)
	if err != nil || !ok {
		return nil
	}
	u, _ := obj.(*unstructured.Unstructured)
	return u
}

// reconcile makes the Sandbox of claim k (namespace/name) match the
// newest claim the cache has.
func (c *claims) reconcile(ctx context.Context, k string) error {
	_, name, err := cache.SplitMetaNamespaceKey(k)
	if err != nil {
		return nil
	}
	claim := cached(c.claimInf, k)
	sb := cached(c.sandboxInf, k)
	sandboxes := c.dyn.Resource(c.sandboxGVR).Namespace(c.ns)

	if claim == nil || claim.GetDeletionTimestamp() != nil {
		// The claim is gone (or going): so is the Sandbox it controls.
		ref := (*metav1.OwnerReference)(nil)
		if sb != nil {
			ref = claimController(sb)
		}
		if ref == nil || ref.Name != name || (claim != nil && ref.UID != claim.GetUID()) {
			return nil
		}
		c.logf("sim: claim %s gone: deleting its sandbox", k)
		return deleteWithUID(ctx, sandboxes, sb)
	}

	if sb != nil {
		ref := claimController(sb)
		switch {
		case ref == nil || ref.Name != name:
			c.logf("sim: claim %s: sandbox %s exists and is not the claim's; waiting for it to go", k, name)
			return nil
		case ref.UID != claim.GetUID():
			// An earlier claim's of the same name, which the garbage
			// collector would delete: its deletion enqueues the claim.
			c.logf("sim: claim %s: deleting the sandbox of an earlier claim of its name", k)
			return deleteWithUID(ctx, sandboxes, sb)
		case sb.GetDeletionTimestamp() != nil:
			return nil // its deletion enqueues the claim
		}
	} else {
		labels := map[string]any{LabelClaimUID: string(claim.GetUID())}
		for key, v := range claim.GetLabels() {
			labels[key] = v
		}
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": c.sandboxGVR.GroupVersion().String(),
			"kind":       "Sandbox",
			"metadata": map[string]any{
				"name": name, "namespace": c.ns, "labels": labels,
				"ownerReferences": []any{map[string]any{
					"apiVersion": ClaimGVR.GroupVersion().String(), "kind": "SandboxClaim",
					"name": name, "uid": string(claim.GetUID()),
					"controller": true, "blockOwnerDeletion": true,
				}},
			},
			"spec": c.running,
		}}
		if _, err := sandboxes.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return nil // the cache is behind: its add event enqueues the claim
			}
			return fmt.Errorf("create sandbox: %w", err)
		}
		c.logf("sim: claim %s: created sandbox %s", k, name)
	}

	if got, _, _ := unstructured.NestedString(claim.Object, "status", "sandbox", "name"); got == name {
		return nil
	}
	// A merge patch of the status subresource: the cache may not have
	// the claim's newest version yet, and the field is ours alone.
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"sandbox": map[string]any{"name": name}}})
	if err != nil {
		return err
	}
	if _, err := c.dyn.Resource(ClaimGVR).Namespace(c.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted meanwhile: its delete event enqueues it
		}
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}

// deleteWithUID deletes the object only if it is still the one read; gone
// already is fine.
func deleteWithUID(ctx context.Context, res dynamic.ResourceInterface, u *unstructured.Unstructured) error {
	uid := u.GetUID()
	err := res.Delete(ctx, u.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete sandbox %s: %w", u.GetName(), err)
	}
	return nil
}

// claimController is the object's controller reference to a
// SandboxClaim, if any.
func claimController(u *unstructured.Unstructured) *metav1.OwnerReference {
	for _, ref := range u.GetOwnerReferences() {
		if ref.Controller == nil || !*ref.Controller || ref.Kind != "SandboxClaim" {
			continue
		}
		if gv, err := schema.ParseGroupVersion(ref.APIVersion); err == nil && gv.Group == ClaimGroup {
			return &ref
		}
	}
	return nil
}
