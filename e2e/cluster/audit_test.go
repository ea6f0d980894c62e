package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// claimGVR is the SandboxClaims of e2e/sim's CRD.
var claimGVR = schema.GroupVersionResource{Group: "extensions.agents.x-k8s.io", Version: "v1beta1", Resource: "sandboxclaims"}

// auditKey is what TestAuditLog compares of an event.
type auditKey struct {
	Verb, User, Namespace, Name, APIVersion, Resource, Subresource string
	Code                                                           int
}

func keyOf(ev AuditEvent) auditKey {
	return auditKey{ev.Verb, ev.User, ev.Namespace, ev.Name, ev.APIVersion, ev.Resource, ev.Subresource, ev.Code}
}

// TestAuditLog makes Sandbox creates, deletes and patches and SandboxClaim
// creates and deletes as admin and as "router" (refused before
// GrantRouter, allowed after), Lease requests as "router", and requests
// the policy leaves out, across a restart and a kill of the API server,
// and finds exactly the audited ones, with their users, codes and
// timestamps.
func TestAuditLog(t *testing.T) {
	c := Start(t)
	ctx := t.Context()
	if err := c.ApplyCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	admin := dynamic.NewForConfigOrDie(c.AdminConfig()).Resource(sandboxGVR).Namespace("default")
	router := dynamic.NewForConfigOrDie(c.RouterConfig()).Resource(sandboxGVR).Namespace("default")
	alphaGVR := sandboxGVR
	alphaGVR.Version = "v1alpha1"
	routerAlpha := dynamic.NewForConfigOrDie(c.RouterConfig()).Resource(alphaGVR).Namespace("default")
	routerLeases := kubernetes.NewForConfigOrDie(c.RouterConfig()).CoordinationV1().Leases(RouterNamespace)

	// The SandboxClaim CRD of the simulated cluster (e2e/sim owns it; a
	// file, not a package dependency).
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := ApplyManifests(ctx, c.AdminConfig(), filepath.Join(root, "e2e", "sim", "testdata", "extensions.agents.x-k8s.io_sandboxclaims.yaml")); err != nil {
		t.Fatal(err)
	}
	adminClaims := dynamic.NewForConfigOrDie(c.AdminConfig()).Resource(claimGVR).Namespace("default")
	routerClaims := dynamic.NewForConfigOrDie(c.RouterConfig()).Resource(claimGVR).Namespace("default")

	start := time.Now()
	var want []auditKey
	expect := func(k auditKey) { want = append(want, k) }
	sandboxKey := func(verb, user, name string, code int) auditKey {
		return auditKey{verb, user, "default", name, "v1beta1", "sandboxes", "", code}
	}
	claimKey := func(verb, user, name string, code int) auditKey {
		return auditKey{verb, user, "default", name, "v1beta1", "sandboxclaims", "", code}
	}
	sandbox := func(name string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox", "metadata": map[string]any{"name": name},
		}}
	}
	claim := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": claimGVR.GroupVersion().String(), "kind": "SandboxClaim", "metadata": map[string]any{"name": "claimed"},
		"spec": map[string]any{"warmPoolRef": map[string]any{"name": "python"}},
	}}

	// Creates and deletes of sandboxes and sandboxclaims are audited, by
	// whoever makes them, refused or not (a create the authorizer refused
	// has no name); gets, lists and status writes are not.
	if _, err := admin.Create(ctx, sandbox("audited"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(sandboxKey("create", "admin", "audited", 201))
	if _, err := admin.List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := router.Create(ctx, sandbox("refused"), metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("create sandbox as router: err %v, want Forbidden", err)
	}
	expect(sandboxKey("create", "router", "", 403))
	if _, err := admin.Create(ctx, sandbox("doomed"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(sandboxKey("create", "admin", "doomed", 201))
	if err := admin.Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(sandboxKey("delete", "admin", "doomed", 200))
	if err := admin.Delete(ctx, "doomed", metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("delete deleted sandbox: err %v, want NotFound", err)
	}
	expect(sandboxKey("delete", "admin", "doomed", 404))
	if _, err := routerClaims.Create(ctx, claim, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("create claim as router: err %v, want Forbidden", err)
	}
	expect(claimKey("create", "router", "", 403))
	if _, err := adminClaims.Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(claimKey("create", "admin", "claimed", 201))
	if _, err := adminClaims.Get(ctx, "claimed", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := adminClaims.Patch(ctx, "claimed", types.MergePatchType, []byte(`{"status":{"sandbox":{"name":"claimed"}}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	if err := routerClaims.Delete(ctx, "claimed", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("delete claim as router: err %v, want Forbidden", err)
	}
	expect(claimKey("delete", "router", "claimed", 403))
	if err := adminClaims.Delete(ctx, "claimed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(claimKey("delete", "admin", "claimed", 200))

	annotate := []byte(`{"metadata":{"annotations":{"sandbox-router.dev/last-activity":"2026-01-01T00:00:00Z"}}}`)
	patch := func(who string, res dynamic.ResourceInterface, body string, code int, sub ...string) {
		t.Helper()
		_, err := res.Patch(ctx, "audited", types.MergePatchType, []byte(body), metav1.PatchOptions{}, sub...)
		switch {
		case code == 200 && err != nil:
			t.Fatalf("patch as %s: %v", who, err)
		case code == 403 && !apierrors.IsForbidden(err):
			t.Fatalf("patch as %s: err %v, want Forbidden", who, err)
		}
	}
	sandboxPatch := func(user, version string, code int) auditKey {
		return auditKey{"patch", user, "default", "audited", version, "sandboxes", "", code}
	}

	patch("admin", admin, string(annotate), 200)
	expect(sandboxPatch("admin", "v1beta1", 200))
	patch("router", router, `{"spec":{"operatingMode":"Running"}}`, 403) // no grant yet
	expect(sandboxPatch("router", "v1beta1", 403))
	// Not audited: a write of the status subresource.
	patch("admin", admin, `{"status":{"podIPs":["127.0.0.9"]}}`, 200, "status")

	if err := c.GrantRouter(ctx); err != nil {
		t.Fatalf("GrantRouter: %v", err)
	}
	patch("router", router, `{"spec":{"operatingMode":"Suspended"}}`, 200)
	expect(sandboxPatch("router", "v1beta1", 200))
	patch("router", routerAlpha, `{"spec":{"replicas":1}}`, 200)
	expect(sandboxPatch("router", "v1alpha1", 200))
	patch("router", router, `{"status":{"podIPs":["127.0.0.9"]}}`, 403, "status") // refused, and not audited

	// The Lease requests of a LeaseLock, and one outside the grant.
	leaseKey := func(verb, ns, name string, code int) auditKey {
		return auditKey{verb, "router", ns, name, "v1", "leases", "", code}
	}
	if _, err := routerLeases.Get(ctx, "audited", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get missing lease: %v", err)
	}
	expect(leaseKey("get", RouterNamespace, "audited", 404))
	lease, err := routerLeases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "audited"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: new("router-0")}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expect(leaseKey("create", RouterNamespace, "audited", 201))
	lease.Spec.HolderIdentity = new("router-1")
	if _, err := routerLeases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(leaseKey("update", RouterNamespace, "audited", 200))
	if _, err := kubernetes.NewForConfigOrDie(c.RouterConfig()).CoordinationV1().Leases("default").Get(ctx, "audited", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("get lease in default as router: err %v, want Forbidden", err)
	}
	expect(leaseKey("get", "default", "audited", 403))

	// The log survives a restart and a kill of the API server.
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	waitServing(t, admin)
	patch("admin", admin, string(annotate), 200)
	expect(sandboxPatch("admin", "v1beta1", 200))
	patch("router", router, string(annotate), 200)
	expect(sandboxPatch("router", "v1beta1", 200))
	if err := c.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	waitServing(t, admin)
	patch("router", router, `{"spec":{"operatingMode":"Running"}}`, 200)
	expect(sandboxPatch("router", "v1beta1", 200))

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	evs, err := c.WaitAuditEvents(wctx, func(evs []AuditEvent) bool { return len(evs) >= len(want) })
	if err != nil {
		t.Fatalf("%v: %v", err, evs)
	}
	// Sequential requests were received in order; a log line is written
	// when its request's handler returns, which may be a moment after the
	// client has its answer, so the lines need not be.
	slices.SortStableFunc(evs, func(a, b AuditEvent) int { return a.RequestReceived.Compare(b.RequestReceived) })
	got := make([]auditKey, len(evs))
	for i, ev := range evs {
		got[i] = keyOf(ev)
	}
	if !slices.Equal(got, want) {
		var b strings.Builder
		for i := range max(len(got), len(want)) {
			var g, w any = "-", "-"
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			fmt.Fprintf(&b, "\n  got  %+v\n  want %+v", g, w)
		}
		t.Fatalf("audit events differ:%s", b.String())
	}
	for _, ev := range evs {
		if ev.APIGroup != map[string]string{"sandboxes": "agents.x-k8s.io", "sandboxclaims": "extensions.agents.x-k8s.io", "leases": "coordination.k8s.io"}[ev.Resource] {
			t.Errorf("%+v: API group %q", ev, ev.APIGroup)
		}
		if ev.RequestReceived.Before(start.Truncate(time.Microsecond)) || ev.StageTimestamp.Before(ev.RequestReceived) {
			t.Errorf("%+v: received %s, finished %s, test started %s", ev, ev.RequestReceived, ev.StageTimestamp, start)
		}
		for _, ts := range []time.Time{ev.RequestReceived, ev.StageTimestamp} {
			if ts.Nanosecond()%1000 != 0 {
				t.Errorf("%+v: timestamp %s finer than the log's microseconds", ev, ts)
			}
		}
	}
	// Read again: the same events (read incrementally, handed out as
	// copies).
	evs[0].User = "changed by the caller"
	again, err := c.AuditEvents()
	if err != nil || len(again) != len(want) || again[0].User == "changed by the caller" {
		t.Errorf("AuditEvents again: %d events, first %+v, err %v", len(again), again[0], err)
	}
}

// waitServing gets the sandbox as admin (gets are not audited) until the
// restarted API server serves the CRD again.
func waitServing(t *testing.T, admin dynamic.ResourceInterface) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := admin.Get(t.Context(), "audited", metav1.GetOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			t.Fatalf("get after the API server restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestParseAuditLog(t *testing.T) {
	ev := func(verb, user, name string, code int) string {
		return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete",`+
			`"verb":%q,"user":{"username":%q,"groups":["system:authenticated"]},`+
			`"objectRef":{"resource":"sandboxes","namespace":"default","name":%q,"apiGroup":"agents.x-k8s.io","apiVersion":"v1beta1"},`+
			`"responseStatus":{"metadata":{},"code":%d},`+
			`"requestReceivedTimestamp":"2026-05-01T10:00:00.123456Z","stageTimestamp":"2026-05-01T10:00:00.125001Z"}`, verb, user, name, code)
	}
	full := ev("patch", "router", "a", 200)
	data := full + "\n" +
		full[:len(full)/2] + ev("update", "admin", "b", 409) + "\n" + // a line cut by a kill, then the next server's
		"\n" +
		ev("patch", "router", "c", 403)[:40] // being written
	evs, n, err := parseAuditLog([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if n != strings.LastIndexByte(data, '\n')+1 {
		t.Errorf("consumed %d bytes, want up to the last newline (%d)", n, strings.LastIndexByte(data, '\n')+1)
	}
	received := time.Date(2026, 5, 1, 10, 0, 0, 123456000, time.UTC)
	want := []AuditEvent{
		{Verb: "patch", User: "router", Namespace: "default", Name: "a", APIGroup: "agents.x-k8s.io", APIVersion: "v1beta1",
			Resource: "sandboxes", Code: 200, RequestReceived: received, StageTimestamp: received.Add(1545 * time.Microsecond)},
		{Verb: "update", User: "admin", Namespace: "default", Name: "b", APIGroup: "agents.x-k8s.io", APIVersion: "v1beta1",
			Resource: "sandboxes", Code: 409, RequestReceived: received, StageTimestamp: received.Add(1545 * time.Microsecond)},
	}
	if len(evs) != len(want) {
		t.Fatalf("events %+v, want %+v", evs, want)
	}
	for i := range want {
		if keyOf(evs[i]) != keyOf(want[i]) || evs[i].APIGroup != want[i].APIGroup ||
			!evs[i].RequestReceived.Equal(want[i].RequestReceived) || !evs[i].StageTimestamp.Equal(want[i].StageTimestamp) {
			t.Errorf("event %d = %+v, want %+v", i, evs[i], want[i])
		}
	}
	if _, _, err := parseAuditLog([]byte("not json\n")); err == nil {
		t.Error("garbage line parsed")
	}
}
