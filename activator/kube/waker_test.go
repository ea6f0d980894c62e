package kube

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sandbox-router/sandbox-router/activator"
	"github.com/sandbox-router/sandbox-router/resolver"
	rkube "github.com/sandbox-router/sandbox-router/resolver/kube"
)

type fixedSpecs map[resolver.Key]rkube.Spec

func (f fixedSpecs) SpecOf(k resolver.Key) (rkube.Spec, bool) {
	s, ok := f[resolver.Key{Namespace: k.Namespace, Name: k.Name}]
	return s, ok
}

func (f fixedSpecs) Versions() []string { return []string{"v1beta1"} }

// bothServed serves both versions.
type bothServed struct{ fixedSpecs }

func (bothServed) Versions() []string { return []string{"v1beta1", "v1alpha1"} }

// recordingClient is a fake dynamic client that keeps the patches sent
// and answers with err when set. (The real API server is exercised by
// e2e/activator; this pins the exact patch bodies and the error mapping.)
func recordingClient(err error) (*dynamicfake.FakeDynamicClient, *[]k8stesting.PatchAction) {
	scheme := runtime.NewScheme()
	gvrs := map[schema.GroupVersionResource]string{
		{Group: rkube.Group, Version: "v1beta1", Resource: "sandboxes"}:  "SandboxList",
		{Group: rkube.Group, Version: "v1alpha1", Resource: "sandboxes"}: "SandboxList",
	}
	c := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, gvrs)
	var patches []k8stesting.PatchAction
	c.PrependReactor("patch", "sandboxes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		patches = append(patches, a.(k8stesting.PatchAction))
		if err != nil {
			return true, nil, err
		}
		return true, &unstructured.Unstructured{Object: map[string]any{}}, nil
	})
	return c, &patches
}

func TestWakerPatches(t *testing.T) {
	at := time.Date(2026, 12, 2, 12, 0, 0, 123e6, time.UTC)
	k := resolver.Key{Namespace: "ns", Name: "a"}
	for _, tc := range []struct {
		name    string
		spec    rkube.Spec
		call    func(w *Waker) error
		version string
		want    string
	}{
		{"resume v1beta1", rkube.Spec{Version: "v1beta1", ModeSuspended: true}, func(w *Waker) error { return w.Resume(context.Background(), k) },
			"v1beta1", `{"metadata":{"annotations":{"sandbox-router.dev/last-activity":"2026-12-02T12:00:00.123Z"}},"spec":{"operatingMode":"Running"}}`},
		{"resume v1alpha1", rkube.Spec{Version: "v1alpha1", ReplicasZero: true}, func(w *Waker) error { return w.Resume(context.Background(), k) },
			"v1alpha1", `{"metadata":{"annotations":{"sandbox-router.dev/last-activity":"2026-12-02T12:00:00.123Z"}},"spec":{"replicas":1}}`},
		{"resume both fields", rkube.Spec{Version: "v1beta1", ModeSuspended: true, ReplicasZero: true}, func(w *Waker) error { return w.Resume(context.Background(), k) },
			"v1beta1", `{"metadata":{"annotations":{"sandbox-router.dev/last-activity":"2026-12-02T12:00:00.123Z"}},"spec":{"operatingMode":"Running","replicas":1}}`},
		{"suspend v1beta1", rkube.Spec{Version: "v1beta1"}, func(w *Waker) error { return w.Suspend(context.Background(), k, "42") },
			"v1beta1", `{"metadata":{"resourceVersion":"42"},"spec":{"operatingMode":"Suspended"}}`},
		{"suspend v1alpha1", rkube.Spec{Version: "v1alpha1"}, func(w *Waker) error { return w.Suspend(context.Background(), k, "42") },
			"v1alpha1", `{"metadata":{"resourceVersion":"42"},"spec":{"replicas":0}}`},
		{"activity", rkube.Spec{Version: "v1beta1"}, func(w *Waker) error { return w.RecordActivity(context.Background(), k, at) },
			"v1beta1", `{"metadata":{"annotations":{"sandbox-router.dev/last-activity":"2026-12-02T12:00:00.123Z"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, patches := recordingClient(nil)
			w := NewWaker(c, fixedSpecs{k: tc.spec})
			w.now = func() time.Time { return at }
			if err := tc.call(w); err != nil {
				t.Fatal(err)
			}
			if len(*patches) != 1 {
				t.Fatalf("%d patches", len(*patches))
			}
			p := (*patches)[0]
			if p.GetResource().Version != tc.version || p.GetNamespace() != "ns" || p.GetName() != "a" || p.GetPatchType() != "application/merge-patch+json" {
				t.Fatalf("patch to %v %s/%s type %s", p.GetResource(), p.GetNamespace(), p.GetName(), p.GetPatchType())
			}
			if got := mustCanon(t, string(p.GetPatch())); got != mustCanon(t, tc.want) {
				t.Fatalf("patch %s\nwant  %s", got, tc.want)
			}
		})
	}
}

// mustCanon re-encodes JSON with sorted keys, for comparison.
// TestResumeEachFieldThroughItsVersion: with both versions served, a
// sandbox suspended by both fields gets each one patched through the
// version that owns it (a pruning CRD would drop it through the other),
// and the last-activity stamp once.
func TestResumeEachFieldThroughItsVersion(t *testing.T) {
	k := resolver.Key{Namespace: "ns", Name: "a"}
	c, patches := recordingClient(nil)
	w := NewWaker(c, bothServed{fixedSpecs{k: {Version: "v1beta1", ModeSuspended: true, ReplicasZero: true}}})
	w.now = func() time.Time { return time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC) }
	if err := w.Resume(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range *patches {
		got[p.GetResource().Version] = mustCanon(t, string(p.GetPatch()))
	}
	want := map[string]string{
		"v1alpha1": mustCanon(t, `{"metadata":{"annotations":{"sandbox-router.dev/last-activity":"2026-12-02T12:00:00.000Z"}},"spec":{"replicas":1}}`),
		"v1beta1":  mustCanon(t, `{"spec":{"operatingMode":"Running"}}`),
	}
	if len(got) != 2 || got["v1alpha1"] != want["v1alpha1"] || got["v1beta1"] != want["v1beta1"] {
		t.Fatalf("patches %v\nwant %v", got, want)
	}
}

func mustCanon(t *testing.T, s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestWakerErrorKinds(t *testing.T) {
	gr := schema.GroupResource{Group: rkube.Group, Resource: "sandboxes"}
	k := resolver.Key{Namespace: "ns", Name: "a"}
	for _, tc := range []struct {
		err  error
		want error
	}{
		{apierrors.NewConflict(gr, "a", errors.New("changed")), activator.ErrConflict},
		{apierrors.NewForbidden(gr, "a", errors.New("rbac")), activator.ErrForbidden},
		{apierrors.NewNotFound(gr, "a"), activator.ErrNotFound},
		{apierrors.NewInvalid(schema.GroupKind{Group: rkube.Group, Kind: "Sandbox"}, "a", nil), activator.ErrInvalid},
		{apierrors.NewServiceUnavailable("etcd"), nil},
	} {
		c, _ := recordingClient(tc.err)
		err := NewWaker(c, fixedSpecs{k: {Version: "v1beta1"}}).Suspend(context.Background(), k, "1")
		for _, kind := range []error{activator.ErrConflict, activator.ErrForbidden, activator.ErrNotFound, activator.ErrInvalid} {
			if errors.Is(err, kind) != (kind == tc.want) {
				t.Errorf("%v: errors.Is(%v) = %v", tc.err, kind, errors.Is(err, kind))
			}
		}
	}
	// Unknown to the resolver: not found, without an API call.
	c, patches := recordingClient(nil)
	if err := NewWaker(c, fixedSpecs{}).Resume(context.Background(), k); !errors.Is(err, activator.ErrNotFound) || len(*patches) != 0 {
		t.Fatalf("unknown sandbox: %v, %d patches", err, len(*patches))
	}
}
