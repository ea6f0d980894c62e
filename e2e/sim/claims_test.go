package sim_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// TestClaims runs RunClaims next to the sim against the real API server
// with our SandboxClaim CRD: a claim gets a running Sandbox of its name,
// owned by it and labelled from it; its status names the Sandbox; a
// Sandbox deleted under a live claim comes back; a deleted claim takes
// its Sandbox along; a foreign Sandbox of a claim's name is left alone; a
// claim re-created under the same name gets a Sandbox of its own; and
// with v1alpha1 the Sandbox runs by spec.replicas.
func TestClaims(t *testing.T) {
	const ns, alpha = "claims", "claims-alpha"
	e := newEnv(t, ns, alpha)
	ctx := t.Context()
	crd, err := sim.ClaimCRDPath()
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(crd) {
		t.Fatalf("ClaimCRDPath %q is not absolute", crd)
	}
	if err := cluster.ApplyManifests(ctx, e.c.AdminConfig(), crd); err != nil {
		t.Fatal(err)
	}
	claimsRes := e.dyn.Resource(sim.ClaimGVR).Namespace(ns)
	sandboxes := e.dyn.Resource(gvr("v1beta1")).Namespace(ns)

	// The CRD requires spec.warmPoolRef.name.
	for _, spec := range []map[string]any{nil, {}, {"warmPoolRef": map[string]any{}}, {"sandboxTemplateRef": map[string]any{"name": "python"}}} {
		if _, err := claimsRes.Create(ctx, claimObject(ns, "invalid", spec, nil), metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
			t.Errorf("claim with spec %v: %v, want Invalid", spec, err)
		}
	}

	s := e.startSim(t, sim.Options{Namespaces: []string{ns}, IPBase: netip.MustParseAddr("127.0.16.1")})
	stop, err := sim.RunClaims(ctx, e.dyn, ns, "v1beta1", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	// A claim gets its Sandbox, which the sim runs.
	claim := createClaim(t, claimsRes, ns, "c1", map[string]string{"team": "blue"})
	sb := waitObject(t, sandboxes, "c1", "the claim's sandbox", func(u *unstructured.Unstructured) bool { return u != nil })
	checkClaimSandbox(t, sb, claim)
	if mode, _, _ := unstructured.NestedString(sb.Object, "spec", "operatingMode"); mode != "Running" {
		t.Errorf("sandbox spec.operatingMode %q", mode)
	}
	waitObject(t, claimsRes, "c1", "status.sandbox.name", func(u *unstructured.Unstructured) bool {
		name, _, _ := unstructured.NestedString(u.Object, "status", "sandbox", "name")
		return name == "c1"
	})
	if _, err := s.WaitPod(ctx, ns, "c1", func(p sim.PodInfo) bool { return p.Ready }); err != nil {
		t.Fatal(err)
	}

	// Deleted under the live claim: it comes back, a new object.
	if err := sandboxes.Delete(ctx, "c1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	again := waitObject(t, sandboxes, "c1", "the claim's sandbox again", func(u *unstructured.Unstructured) bool {
		return u != nil && u.GetUID() != sb.GetUID()
	})
	checkClaimSandbox(t, again, claim)

	// The claim deleted: its Sandbox goes, and so does the pod.
	pod, err := s.WaitPod(ctx, ns, "c1", func(p sim.PodInfo) bool { return p.Ready })
	if err != nil {
		t.Fatal(err)
	}
	if err := claimsRes.Delete(ctx, "c1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitObject(t, sandboxes, "c1", "the sandbox gone with its claim", func(u *unstructured.Unstructured) bool { return u == nil })
	e.waitPodGone(t, ns, pod.Name)

	// A foreign Sandbox of the claim's name is left alone until it goes.
	foreign := e.createSandbox(t, "v1beta1", ns, "c2", map[string]any{"operatingMode": "Running"}, nil)
	createClaim(t, claimsRes, ns, "c2", nil)
	got, err := sandboxes.Get(ctx, "c2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetUID() != foreign.GetUID() || len(got.GetOwnerReferences()) != 0 {
		t.Errorf("foreign sandbox changed: uid %s, owners %v", got.GetUID(), got.GetOwnerReferences())
	}
	if err := sandboxes.Delete(ctx, "c2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	owned := waitObject(t, sandboxes, "c2", "the claim's own sandbox", func(u *unstructured.Unstructured) bool {
		return u != nil && u.GetUID() != foreign.GetUID()
	})
	c2, err := claimsRes.Get(ctx, "c2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkClaimSandbox(t, owned, c2)

	// Re-created under the same name: the new claim's Sandbox replaces
	// the old one's.
	if err := claimsRes.Delete(ctx, "c2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c2new := createClaim(t, claimsRes, ns, "c2", map[string]string{"gen": "2"})
	renewed := waitObject(t, sandboxes, "c2", "the new claim's sandbox", func(u *unstructured.Unstructured) bool {
		return u != nil && u.GetLabels()[sim.LabelClaimUID] == string(c2new.GetUID())
	})
	checkClaimSandbox(t, renewed, c2new)

	// v1alpha1: the Sandbox runs by spec.replicas.
	stopAlpha, err := sim.RunClaims(ctx, e.dyn, alpha, "v1alpha1", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopAlpha)
	a := createClaim(t, e.dyn.Resource(sim.ClaimGVR).Namespace(alpha), alpha, "a1", nil)
	asb := waitObject(t, e.dyn.Resource(gvr("v1alpha1")).Namespace(alpha), "a1", "the v1alpha1 sandbox", func(u *unstructured.Unstructured) bool { return u != nil })
	checkClaimSandbox(t, asb, a)
	if r, _, _ := unstructured.NestedInt64(asb.Object, "spec", "replicas"); r != 1 || asb.GetAPIVersion() != sim.Group+"/v1alpha1" {
		t.Errorf("v1alpha1 sandbox: %s, spec.replicas %d", asb.GetAPIVersion(), r)
	}

	if _, err := sim.RunClaims(ctx, e.dyn, ns, "v2", nil); err == nil {
		t.Error("RunClaims with Sandbox version v2: no error")
	}
	stop()
	stop() // idempotent
}

func claimObject(ns, name string, spec map[string]any, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": sim.ClaimGVR.GroupVersion().String(), "kind": "SandboxClaim",
		"metadata": map[string]any{"name": name, "namespace": ns},
	}}
	if spec != nil {
		u.Object["spec"] = spec
	}
	if labels != nil {
		u.SetLabels(labels)
	}
	return u
}

func createClaim(t *testing.T, res dynamic.ResourceInterface, ns, name string, labels map[string]string) *unstructured.Unstructured {
	t.Helper()
	u, err := res.Create(t.Context(), claimObject(ns, name, map[string]any{"warmPoolRef": map[string]any{"name": "python"}}, labels), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create claim %s/%s: %v", ns, name, err)
	}
	return u
}

// checkClaimSandbox checks that the Sandbox is the claim's: controlled by
// it, with its labels and its UID label.
func checkClaimSandbox(t *testing.T, sb, claim *unstructured.Unstructured) {
	t.Helper()
	ref := metav1.GetControllerOf(sb)
	if ref == nil || ref.Kind != "SandboxClaim" || ref.APIVersion != sim.ClaimGVR.GroupVersion().String() ||
		ref.Name != claim.GetName() || ref.UID != claim.GetUID() || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("sandbox %s: controller %+v, want claim %s (%s)", sb.GetName(), ref, claim.GetName(), claim.GetUID())
	}
	labels := sb.GetLabels()
	if labels[sim.LabelClaimUID] != string(claim.GetUID()) {
		t.Errorf("sandbox %s: labels %v, want %s=%s", sb.GetName(), labels, sim.LabelClaimUID, claim.GetUID())
	}
	for k, v := range claim.GetLabels() {
		if labels[k] != v {
			t.Errorf("sandbox %s: label %s=%q, want the claim's %q", sb.GetName(), k, labels[k], v)
		}
	}
}

// waitObject watches the named object until cond holds (cond(nil): it
// does not exist) and returns what cond last saw.
func waitObject(t *testing.T, res dynamic.ResourceInterface, name, what string, cond func(*unstructured.Unstructured) bool) *unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	last, err := cluster.WaitObject(ctx, res, name, cond)
	if err != nil {
		desc := "absent"
		if last != nil {
			desc = fmt.Sprintf("uid %s, labels %v, owners %v", last.GetUID(), last.GetLabels(), last.GetOwnerReferences())
		}
		t.Fatalf("%s (%s): %v; last seen: %s", name, what, err, desc)
	}
	return last
}
