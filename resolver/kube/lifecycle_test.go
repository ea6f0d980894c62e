package kube

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-router/sandbox-router/resolver"
)

var (
	idleMs = func(ms uint32) func(*sandboxRecord) {
		return func(r *sandboxRecord) { r.idleTimeout, r.flags = ms, r.flags|idleSet }
	}
	holdMs = func(ms uint32) func(*sandboxRecord) {
		return func(r *sandboxRecord) { r.holdTimeout, r.flags = ms, r.flags|holdSet }
	}
	activityAt = func(ns int64) func(*sandboxRecord) {
		return func(r *sandboxRecord) { r.lastActivity, r.flags = ns, r.flags|activitySet }
	}
	modeOff = func(r *sandboxRecord) { r.flags |= modeSuspended }
	zeroRep = func(r *sandboxRecord) { r.flags |= replicasZero }
)

// TestLifecycleAndSpec checks which view Lifecycle and SpecOf read, and
// when they know nothing.
func TestLifecycleAndSpec(t *testing.T) {
	type want struct {
		ok   bool
		lc   resolver.Lifecycle
		spec Spec
	}
	tests := []struct {
		name  string
		build func(ix *index)
		key   resolver.Key
		want  want
	}{
		{"unknown", func(ix *index) {}, byName("a"), want{}},
		{"v1beta1 only", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 7, idleMs(900000), holdMs(30000), activityAt(1796032803000000001)))
		}, byName("a"), want{true,
			resolver.Lifecycle{IdleTimeout: 15 * time.Minute, IdleTimeoutSet: true, HoldTimeout: 30 * time.Second, HoldTimeoutSet: true,
				LastActivity: time.Unix(0, 1796032803000000001).UTC(), Revision: "7"},
			Spec{Version: "v1beta1", UID: "u1", Revision: "7"}}},
		{"v1beta1 only, suspended", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 7, modeOff))
		}, byName("a"), want{true, resolver.Lifecycle{Revision: "7"},
			Spec{Version: "v1beta1", UID: "u1", ModeSuspended: true, Revision: "7"}}},
		{"v1alpha1 only, suspended", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 8, alpha, zeroRep, idleMs(0)))
		}, byName("a"), want{true, resolver.Lifecycle{IdleTimeoutSet: true, Revision: "8"},
			Spec{Version: "v1alpha1", UID: "u1", ReplicasZero: true, Revision: "8"}}},
		{"both views, the newer v1alpha1 wins", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 8, idleMs(1000), modeOff))
			ix.setSandbox(sb("a", "u1", 9, alpha, idleMs(2000)))
		}, byName("a"), want{true, resolver.Lifecycle{IdleTimeout: 2 * time.Second, IdleTimeoutSet: true, Revision: "9"},
			Spec{Version: "v1alpha1", UID: "u1", Revision: "9"}}},
		{"both views, the newer v1beta1 wins", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 9, holdMs(5000)))
			ix.setSandbox(sb("a", "u1", 8, alpha, holdMs(6000), zeroRep))
		}, byName("a"), want{true, resolver.Lifecycle{HoldTimeout: 5 * time.Second, HoldTimeoutSet: true, Revision: "9"},
			Spec{Version: "v1beta1", UID: "u1", Revision: "9"}}},
		{"both views of one write merge the suspension fields", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 9, modeOff))
			ix.setSandbox(sb("a", "u1", 9, alpha, zeroRep))
		}, byName("a"), want{true, resolver.Lifecycle{Revision: "9"},
			Spec{Version: "v1beta1", UID: "u1", ModeSuspended: true, ReplicasZero: true, Revision: "9"}}},
		{"matching UID", func(ix *index) { ix.setSandbox(sb("a", "u1", 7)) },
			resolver.Key{Namespace: "ns", Name: "a", UID: "u1"},
			want{true, resolver.Lifecycle{Revision: "7"}, Spec{Version: "v1beta1", UID: "u1", Revision: "7"}}},
		{"UID mismatch", func(ix *index) { ix.setSandbox(sb("a", "u1", 7)) },
			resolver.Key{Namespace: "ns", Name: "a", UID: "u0"}, want{}},
		{"recreated under the same name, old UID", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 7))
			ix.setSandbox(sb("a", "u2", 9, alpha))
		}, resolver.Key{Namespace: "ns", Name: "a", UID: "u1"}, want{}},
		{"by UID alone", func(ix *index) { ix.setSandbox(sb("a", "u1", 7)) },
			resolver.Key{Namespace: "ns", UID: "u1"},
			want{true, resolver.Lifecycle{Revision: "7"}, Spec{Version: "v1beta1", UID: "u1", Revision: "7"}}},
		{"by UID alone, other namespace", func(ix *index) { ix.setSandbox(sb("a", "u1", 7)) },
			resolver.Key{Namespace: "other", UID: "u1"}, want{}},
		{"deleting", func(ix *index) { ix.setSandbox(sb("a", "u1", 7, deleting, idleMs(1000))) }, byName("a"), want{}},
		{"deleting seen through the older view only", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 9))
			ix.setSandbox(sb("a", "u1", 8, alpha, deleting))
		}, byName("a"), want{}},
		{"deleted", func(ix *index) {
			s := sb("a", "u1", 7)
			ix.setSandbox(s)
			ix.deleteSandbox(s)
		}, byName("a"), want{}},
		{"pods only", func(ix *index) { ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", true)) }, byName("a"), want{}},
		{"warm-pool pod", func(ix *index) {
			ix.setPod(nil, pod("w", "", "", "10.0.0.1", true, func(p *podRecord) { p.warmPool = true }))
		}, resolver.Key{Namespace: "ns", Name: "w", UID: "uid-w"}, want{}},
		{"resource version not a number", func(ix *index) { ix.setSandbox(sb("a", "u1", 0)) }, byName("a"),
			want{true, resolver.Lifecycle{}, Spec{Version: "v1beta1", UID: "u1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := newTestIndex()
			tt.build(ix)
			lc, ok := ix.lifecycle(tt.key)
			if ok != tt.want.ok || lc != tt.want.lc {
				t.Fatalf("Lifecycle: got %+v %v, want %+v %v", lc, ok, tt.want.lc, tt.want.ok)
			}
			spec, ok := ix.spec(tt.key)
			if ok != tt.want.ok || spec != tt.want.spec {
				t.Fatalf("SpecOf: got %+v %v, want %+v %v", spec, ok, tt.want.spec, tt.want.ok)
			}
		})
	}
}

// TestLifecycleAllocations holds Lifecycle and SpecOf to the one
// allocation of their Revision string.
func TestLifecycleAllocations(t *testing.T) {
	ix := newTestIndex()
	ix.setSandbox(sb("a", "u1", 123456, idleMs(1000), activityAt(1)))
	k := resolver.Key{Namespace: "ns", Name: "a", UID: "u1"}
	if n := testing.AllocsPerRun(1000, func() { ix.lifecycle(k) }); n > 1 {
		t.Fatalf("Lifecycle allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { ix.spec(k) }); n > 1 {
		t.Fatalf("SpecOf allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { ix.lifecycle(byName("nope")) }); n != 0 {
		t.Fatalf("a Lifecycle miss allocates %v times", n)
	}
}

// TestTimeoutChangesNotify checks the two directions of the signature: a
// new idle or hold timeout wakes waiters and feeds, a new last activity
// or resource version alone does not.
func TestTimeoutChangesNotify(t *testing.T) {
	ix := newTestIndex()
	f := ix.notify.subscribe()
	defer f.Close()
	ix.setSandbox(sb("a", "u1", 1, idleMs(60000), activityAt(1)))
	drain := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		_, _ = f.Next(ctx)
	}
	drain()
	pending := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		keys, err := f.Next(ctx)
		return err == nil && len(keys) > 0
	}
	steps := []struct {
		name   string
		rec    *sandboxRecord
		notify bool
	}{
		{"resource version only", sb("a", "u1", 2, idleMs(60000), activityAt(1)), false},
		{"last activity only", sb("a", "u1", 3, idleMs(60000), activityAt(2)), false},
		{"last activity removed", sb("a", "u1", 4, idleMs(60000)), false},
		{"idle timeout changed", sb("a", "u1", 5, idleMs(120000)), true},
		{"idle timeout to 0", sb("a", "u1", 6, idleMs(0)), true},
		{"idle timeout removed (0 but unset)", sb("a", "u1", 7), true},
		{"hold timeout set", sb("a", "u1", 8, holdMs(30000)), true},
		{"hold timeout changed", sb("a", "u1", 9, holdMs(31000)), true},
		{"hold timeout changed, last activity too", sb("a", "u1", 10, holdMs(32000), activityAt(3)), true},
		{"an older view's timeout has no say", sb("a", "u1", 9, alpha, holdMs(1000)), false},
		{"the same write seen through v1alpha1", sb("a", "u1", 10, alpha, holdMs(32000), activityAt(3)), false},
	}
	for _, st := range steps {
		ch, release := ix.notify.wait(byName("a"))
		ix.setSandbox(st.rec)
		if got := closed(ch); got != st.notify {
			t.Fatalf("%s: waiter woken %v, want %v", st.name, got, st.notify)
		}
		if got := pending(); got != st.notify {
			t.Fatalf("%s: feed reported %v, want %v", st.name, got, st.notify)
		}
		release()
	}
}

// TestInvalidAnnotationsCountedOnce checks that an invalid annotation is
// counted (and logged) when it appears, not at every update that keeps
// it, nor once more for the second API version.
func TestInvalidAnnotationsCountedOnce(t *testing.T) {
	var logs strings.Builder
	r := newResolver(Options{Logger: slogText(&logs)})
	reg := prometheus.NewRegistry()
	if err := r.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	bad := func(f sandboxFlags) func(*sandboxRecord) { return func(r *sandboxRecord) { r.flags |= f } }
	steps := []struct {
		rec  *sandboxRecord
		want float64
	}{
		{sb("a", "u1", 1, bad(idleInvalid)), 1},
		{sb("a", "u1", 2, bad(idleInvalid)), 1},                 // still invalid
		{sb("a", "u1", 2, alpha, bad(idleInvalid)), 1},          // the other version's view
		{sb("a", "u1", 3, bad(idleInvalid|holdInvalid)), 2},     // a second one appears
		{sb("a", "u1", 4, idleMs(1000)), 2},                     // fixed
		{sb("a", "u1", 4, alpha, idleMs(1000)), 2},              // fixed in both views
		{sb("a", "u1", 5, bad(idleInvalid|activityInvalid)), 4}, // broken again
		{sb("b", "u2", 1, bad(invalidAnnotations)), 8},
	}
	for i, st := range steps {
		r.idx.setSandbox(st.rec)
		if got := gauge(t, reg, "sandbox_router_resolver_invalid_annotations_total"); got != st.want {
			t.Fatalf("step %d: counter %v, want %v", i, got, st.want)
		}
	}
	if n := strings.Count(logs.String(), "ignoring an invalid sandbox annotation"); n != 8 {
		t.Fatalf("%d log lines, want 8:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "annotation="+HoldTimeoutAnnotation) {
		t.Fatalf("log does not name the annotation:\n%s", logs.String())
	}
}

func gauge(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			m := f.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func slogText(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
