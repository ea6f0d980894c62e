package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/sandbox-router/sandbox-router/mcp"
)

// LabelWarmPool marks an unclaimed warm-pool Sandbox (upstream's
// SandboxWarmPoolLabel): it belongs to its pool, not to a caller, and
// ListNames never lists it.
const LabelWarmPool = "agents.x-k8s.io/warm-pool-sandbox"

// SetSuspended suspends (true) or resumes (false) the Sandbox with a JSON
// merge patch of its spec as the caller: spec.operatingMode Suspended or
// Running (v1beta1), spec.replicas 0 or 1 (v1alpha1). The caller needs
// patch on sandboxes. It returns once the API server has the new spec;
// the sandbox's controller acts on it after.
func (c *Cluster) SetSuspended(ctx context.Context, token, namespace, name string, suspended bool) error {
	if err := checkNames(namespace, name); err != nil {
		return err
	}
	cl, err := c.clientsFor(token)
	if err != nil {
		return err
	}
	var spec map[string]any
	switch {
	case c.suspended && suspended:
		spec = map[string]any{"operatingMode": "Suspended"}
	case c.suspended:
		spec = map[string]any{"operatingMode": "Running"}
	case suspended:
		spec = map[string]any{"replicas": 0}
	default:
		spec = map[string]any{"replicas": 1}
	}
	patch, err := json.Marshal(map[string]any{"spec": spec})
	if err != nil {
		return fmt.Errorf("%w: %w", mcp.ErrInvalid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err = cl.dyn.Resource(c.sandboxes).Namespace(namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return classify(err)
}

// CreateClaim creates the SandboxClaim name as the caller: its
// controller (upstream's extensions controller) then makes a Sandbox for
// it, of the claim's name on a cold start (a warm sandbox it adopts keeps
// its own name; status.sandbox.name of the claim says which). warmPool
// names what is claimed: with v1beta1 claims (upstream v1.0.1, the
// default) the SandboxWarmPool, spec.warmPoolRef.name, which names the
// SandboxTemplate (with no warm sandbox free the controller starts one
// cold from that template); with v1alpha1 claims the SandboxTemplate
// itself, spec.sandboxTemplateRef.name. The caller needs create on
// sandboxclaims; ErrConflict if the claim exists.
func (c *Cluster) CreateClaim(ctx context.Context, token, namespace, name, warmPool string) error {
	if err := checkNames(namespace, name); err != nil {
		return err
	}
	if errs := validation.IsDNS1123Subdomain(warmPool); len(errs) > 0 {
		return fmt.Errorf("%w: %s %q: %s", mcp.ErrInvalid, c.claimRef, warmPool, strings.Join(errs, "; "))
	}
	cl, err := c.clientsFor(token)
	if err != nil {
		return err
	}
	claim := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": c.claims.GroupVersion().String(),
		"kind":       "SandboxClaim",
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"spec":       map[string]any{c.claimRef: map[string]any{"name": warmPool}},
	}}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err = cl.dyn.Resource(c.claims).Namespace(namespace).Create(ctx, claim, metav1.CreateOptions{})
	return classify(err)
}

// ClaimedSandbox waits, as the caller, until the SandboxClaim claim
// names its Sandbox (status.sandbox.name: the claim's own name on a cold
// start, a warm sandbox's name when the controller adopted one) and
// returns that name; ctx bounds the wait. One watch of the one claim
// (its current state first), so the caller needs watch on
// sandboxclaims: ErrForbidden without it.
func (c *Cluster) ClaimedSandbox(ctx context.Context, token, namespace, claim string) (string, error) {
	if err := checkNames(namespace, claim); err != nil {
		return "", err
	}
	cl, err := c.clientsFor(token)
	if err != nil {
		return "", err
	}
	w, err := cl.dyn.Resource(c.claims).Namespace(namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", claim).String(),
	})
	if err != nil {
		return "", classify(err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return "", fmt.Errorf("%w: the watch of claim %s ended", mcp.ErrUnavailable, claim)
			}
			switch ev.Type {
			case watch.Deleted:
				return "", fmt.Errorf("%w: claim %s was deleted", mcp.ErrNotFound, claim)
			case watch.Error:
				return "", classify(apierrors.FromObject(ev.Object))
			}
			if u, ok := ev.Object.(*unstructured.Unstructured); ok {
				if name, _, _ := unstructured.NestedString(u.Object, "status", "sandbox", "name"); name != "" {
					return name, nil
				}
			}
		}
	}
}

// Delete deletes the sandbox name as the caller, choosing what to delete
// so that the sandbox does not come back:
//
//  1. the Sandbox of that name is read: if a SandboxClaim controls it
//     (its own claim, or one of another name that adopted it from a warm
//     pool), that claim is deleted, since deleting the Sandbox alone would
//     only make the claim's controller start a new one (ErrForbidden, and
//     nothing deleted, if the caller may not); otherwise the Sandbox
//     itself. A claim of the same name that controls another sandbox is
//     left alone;
//  2. no Sandbox the caller may read: the SandboxClaim of that name, if
//     it names no other sandbox (one not yet given its sandbox names
//     none);
//  3. the caller may not read Sandboxes and no such claim: the
//     Sandbox's delete is tried blind and the API server's answer
//     returned.
//
// So a caller with rights on sandboxes only (get, delete) can delete
// sandboxes that no claim owns, and a caller with rights on claims can
// delete its claims. Every delete carries a UID precondition of the
// object read, so an object replaced meanwhile is not deleted
// (ErrConflict). ErrNotFound if there is neither (or none the caller may
// see). It returns once the API server accepted the deletion; the
// Sandbox and its pod go shortly after.
func (c *Cluster) Delete(ctx context.Context, token, namespace, name string) error {
	if err := checkNames(namespace, name); err != nil {
		return err
	}
	cl, err := c.clientsFor(token)
	if err != nil {
		return err
	}
	claims := cl.dyn.Resource(c.claims).Namespace(namespace)
	sandboxes := cl.dyn.Resource(c.sandboxes).Namespace(namespace)

	// 1. The Sandbox, and the claim that controls it: a claim of the same
	// name may control another sandbox (one it adopted from a warm pool).
	sb, err := c.get(ctx, sandboxes, name)
	switch {
	case err == nil:
		if ref := controllingClaim(sb); ref != nil {
			err := c.deleteObject(ctx, claims, ref.Name, ref.UID, false)
			switch {
			case err == nil:
				return nil
			case errors.Is(err, mcp.ErrForbidden):
				return fmt.Errorf("%w: sandbox %q belongs to SandboxClaim %q, which the caller may not delete: %s",
					mcp.ErrForbidden, name, ref.Name, strings.TrimPrefix(err.Error(), mcp.ErrForbidden.Error()+": "))
			case !errors.Is(err, mcp.ErrNotFound):
				return err
			}
			// The claim is gone already: its Sandbox is an orphan that the
			// garbage collector will delete; delete it now.
		}
		return c.deleteObject(ctx, sandboxes, name, sb.GetUID(), true)
	case errors.Is(err, mcp.ErrNotFound), errors.Is(err, mcp.ErrForbidden):
	default:
		return err
	}
	sandboxForbidden := errors.Is(err, mcp.ErrForbidden)

	// 2. No Sandbox the caller may read: the claim of that name, if it
	// names no other sandbox (a claim not yet given one names none).
	claim, err := c.get(ctx, claims, name)
	switch {
	case err == nil:
		got, _, _ := unstructured.NestedString(claim.Object, "status", "sandbox", "name")
		if got == "" || got == name {
			return c.deleteObject(ctx, claims, name, claim.GetUID(), true)
		}
		if !sandboxForbidden {
			return fmt.Errorf("%w: no sandbox %q (SandboxClaim %q has sandbox %q)", mcp.ErrNotFound, name, name, got)
		}
	case errors.Is(err, mcp.ErrNotFound), errors.Is(err, mcp.ErrForbidden):
	default:
		return err
	}
	if !sandboxForbidden {
		return fmt.Errorf("%w: no sandbox or SandboxClaim %q", mcp.ErrNotFound, name)
	}
	// 3. The caller may not read sandboxes: its delete, blind, and the API
	// server's answer.
	return c.deleteObject(ctx, sandboxes, name, "", false)
}

// ListNames returns the names of the Sandboxes of namespace that match
// labelSelector ("" matches all), at most limit of them (DefaultListLimit
// when limit is not positive), in the API server's order (by name), as
// the caller (list on sandboxes). Only metadata is read. Unclaimed
// warm-pool Sandboxes (label LabelWarmPool) are never listed.
func (c *Cluster) ListNames(ctx context.Context, token, namespace, labelSelector string, limit int64) ([]string, error) {
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return nil, fmt.Errorf("%w: namespace %q: %s", mcp.ErrInvalid, namespace, strings.Join(errs, "; "))
	}
	sel, err := labels.Parse(labelSelector)
	if err != nil {
		return nil, fmt.Errorf("%w: label selector: %w", mcp.ErrInvalid, err)
	}
	notWarm, err := labels.NewRequirement(LabelWarmPool, selection.DoesNotExist, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", mcp.ErrInvalid, err)
	}
	sel = sel.Add(*notWarm)
	if limit <= 0 {
		limit = DefaultListLimit
	}
	cl, err := c.clientsFor(token)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	list, err := cl.meta.Resource(c.sandboxes).Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String(), Limit: limit})
	if err != nil {
		return nil, classify(err)
	}
	names := make([]string, 0, len(list.Items))
	for _, it := range list.Items {
		if int64(len(names)) == limit {
			break
		}
		names = append(names, it.Name)
	}
	return names, nil
}

// get reads one object, bounded by the timeout.
func (c *Cluster) get(ctx context.Context, res resource, name string) (*unstructured.Unstructured, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u, err := res.Get(ctx, name, metav1.GetOptions{})
	return u, classify(err)
}

// deleteObject deletes one object, only if it still has uid (when not
// empty). goneIsDone: a NotFound answer means it is gone already, which
// was the point.
func (c *Cluster) deleteObject(ctx context.Context, res resource, name string, uid types.UID, goneIsDone bool) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var opts metav1.DeleteOptions
	if uid != "" {
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	err := classify(res.Delete(ctx, name, opts))
	if goneIsDone && errors.Is(err, mcp.ErrNotFound) {
		return nil
	}
	return err
}

// resource is the part of dynamic.ResourceInterface Delete uses.
type resource interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions, subresources ...string) (*unstructured.Unstructured, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions, subresources ...string) error
}

// controllingClaim is the Sandbox's controller reference to a
// SandboxClaim, if any.
func controllingClaim(sb *unstructured.Unstructured) *metav1.OwnerReference {
	for _, ref := range sb.GetOwnerReferences() {
		if ref.Controller == nil || !*ref.Controller || ref.Kind != "SandboxClaim" {
			continue
		}
		if gv, err := schema.ParseGroupVersion(ref.APIVersion); err == nil && gv.Group == ClaimGroup {
			return &ref
		}
	}
	return nil
}

// checkNames refuses a namespace that is not a DNS-1123 label or a name
// that is not a DNS-1123 subdomain before anything is sent.
func checkNames(namespace, name string) error {
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return fmt.Errorf("%w: namespace %q: %s", mcp.ErrInvalid, namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("%w: name %q: %s", mcp.ErrInvalid, name, strings.Join(errs, "; "))
	}
	return nil
}
