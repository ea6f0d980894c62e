package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/sandbox-router/sandbox-router/activator"
	"github.com/sandbox-router/sandbox-router/resolver"
	rkube "github.com/sandbox-router/sandbox-router/resolver/kube"
)

// Specs says which API version and fields a sandbox's patch must use; the
// informer-backed resolver implements it.
type Specs interface {
	SpecOf(key resolver.Key) (rkube.Spec, bool)
	// Versions are the Sandbox API versions watched (served).
	Versions() []string
}

// Waker patches Sandbox objects. Every patch is a JSON merge patch that
// names only the fields it sets, so it is idempotent and never overwrites
// what a controller or a user wrote elsewhere in the object.
type Waker struct {
	client dynamic.Interface
	specs  Specs
	now    func() time.Time
}

// FieldManager is the name the router's writes carry in managedFields.
const FieldManager = "sandbox-router"

// NewWaker builds a Waker on a dynamic client.
func NewWaker(client dynamic.Interface, specs Specs) *Waker {
	return &Waker{client: client, specs: specs, now: time.Now}
}

// Resume sets the field(s) that suspend the sandbox back to running, and
// stamps its last activity: the sandbox was just asked for, and the idle
// suspender must not take an old stamp for idleness the moment it runs.
//
// Each field goes through its own API version when that version is
// served (operatingMode is v1beta1's, replicas v1alpha1's): with a CRD
// whose schemas prune the other version's field, a patch through the
// wrong version would be accepted and silently dropped. Otherwise it goes
// through the version of the newest view, which then carries the field.
func (w *Waker) Resume(ctx context.Context, key resolver.Key) error {
	spec, ok := w.specs.SpecOf(key)
	if !ok {
		return fmt.Errorf("resume %s/%s: %w", key.Namespace, key.Name, activator.ErrNotFound)
	}
	served := w.specs.Versions()
	via := func(native string) string {
		if slices.Contains(served, native) {
			return native
		}
		return spec.Version
	}
	byVersion := map[string]map[string]any{}
	set := func(version, field string, value any) {
		if byVersion[version] == nil {
			byVersion[version] = map[string]any{}
		}
		byVersion[version][field] = value
	}
	if spec.ModeSuspended {
		set(via("v1beta1"), "operatingMode", "Running")
	}
	if spec.ReplicasZero {
		set(via("v1alpha1"), "replicas", 1)
	}
	if len(byVersion) == 0 {
		// Our view is older than the suspension (or the sandbox is
		// suspending by another field's doing): set this version's own.
		if spec.Version == "v1alpha1" {
			set(spec.Version, "replicas", 1)
		} else {
			set(spec.Version, "operatingMode", "Running")
		}
	}
	stamp := map[string]any{"annotations": map[string]string{rkube.LastActivityAnnotation: formatTime(w.now())}}
	for _, version := range slices.Sorted(maps.Keys(byVersion)) {
		patch := map[string]any{"spec": byVersion[version]}
		if stamp != nil {
			patch["metadata"], stamp = stamp, nil
		}
		if err := w.patch(ctx, key, version, patch, "resume"); err != nil {
			return err
		}
	}
	return nil
}

// Suspend sets the version's suspend field, only if the sandbox is still
// at revision: the decision was made on that revision, and any write
// since (activity reported by another replica) must be looked at first.
func (w *Waker) Suspend(ctx context.Context, key resolver.Key, revision string) error {
	spec, ok := w.specs.SpecOf(key)
	if !ok {
		return fmt.Errorf("suspend %s/%s: %w", key.Namespace, key.Name, activator.ErrNotFound)
	}
	fields := map[string]any{"operatingMode": "Suspended"}
	if spec.Version == "v1alpha1" {
		fields = map[string]any{"replicas": 0}
	}
	meta := map[string]any{}
	if revision != "" {
		meta["resourceVersion"] = revision
	}
	return w.patch(ctx, key, spec.Version, map[string]any{"metadata": meta, "spec": fields}, "suspend")
}

// RecordActivity writes the last-activity annotation.
func (w *Waker) RecordActivity(ctx context.Context, key resolver.Key, at time.Time) error {
	spec, ok := w.specs.SpecOf(key)
	if !ok {
		return fmt.Errorf("record activity %s/%s: %w", key.Namespace, key.Name, activator.ErrNotFound)
	}
	patch := map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{rkube.LastActivityAnnotation: formatTime(at)}},
	}
	return w.patch(ctx, key, spec.Version, patch, "record activity")
}

// formatTime is the annotation's format: RFC 3339 in UTC, milliseconds.
func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func (w *Waker) patch(ctx context.Context, key resolver.Key, version string, patch map[string]any, what string) error {
	body, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w", what, key.Namespace, key.Name, err)
	}
	gvr := schema.GroupVersionResource{Group: rkube.Group, Version: version, Resource: "sandboxes"}
	_, err = w.client.Resource(gvr).Namespace(key.Namespace).Patch(ctx, key.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w: %w", what, key.Namespace, key.Name, kind(err), err)
	}
	return nil
}

// kind maps an API error to the activator's error kinds.
func kind(err error) error {
	switch {
	case apierrors.IsConflict(err):
		return activator.ErrConflict
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return activator.ErrForbidden
	case apierrors.IsNotFound(err), apierrors.IsGone(err):
		return activator.ErrNotFound
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsUnsupportedMediaType(err):
		return activator.ErrInvalid
	}
	return errTransient
}

var errTransient = fmt.Errorf("transient API error")
