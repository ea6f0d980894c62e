package kube

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func newTestIndex() *index {
	return newIndex(newNotifier(), func() int64 { return time.Now().UnixNano() }, nil)
}

func sb(name string, uid types.UID, rv uint64, mut ...func(*sandboxRecord)) *sandboxRecord {
	r := &sandboxRecord{namespace: "ns", name: name, uid: uid, resourceVersion: rv}
	for _, m := range mut {
		m(r)
	}
	return r
}

func pod(name string, owner string, ownerUID types.UID, ip string, ready bool, mut ...func(*podRecord)) *podRecord {
	p := &podRecord{namespace: "ns", name: name, uid: types.UID("uid-" + name), owner: owner, ownerUID: ownerUID, ready: ready}
	if ip != "" {
		p.ip = netip.MustParseAddr(ip)
	}
	for _, m := range mut {
		m(p)
	}
	return p
}

var (
	statusReady = func(ip string) func(*sandboxRecord) {
		return func(r *sandboxRecord) { r.ready, r.podIP = condTrue, netip.MustParseAddr(ip) }
	}
	suspended = func(r *sandboxRecord) { r.flags |= modeSuspended }
	deleting  = func(r *sandboxRecord) { r.deleting = true }
	finished  = func(r *sandboxRecord) { r.finished = condTrue }
	alpha     = func(r *sandboxRecord) { r.version = v1alpha1 }
)

func byName(name string) resolver.Key { return resolver.Key{Namespace: "ns", Name: name} }

// TestState walks the state table: which records give which answer.
func TestState(t *testing.T) {
	ip1, ip2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	tests := []struct {
		name   string
		build  func(ix *index)
		want   resolver.State
		wantIP netip.Addr
	}{
		{"unknown", func(ix *index) {}, resolver.StateUnknown, netip.Addr{}},
		{"no pod yet", func(ix *index) { ix.setSandbox(sb("a", "u1", 1)) }, resolver.StateStarting, netip.Addr{}},
		{"pod ready first", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 1))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", true))
		}, resolver.StateRunning, ip1},
		{"pod not ready", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 1))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", false))
		}, resolver.StateStarting, netip.Addr{}},
		{"sandbox status ready first", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 2, statusReady("10.0.0.1")))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", false))
		}, resolver.StateRunning, ip1},
		{"sandbox status ready, no pod seen: the IP may be another sandbox's by now", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 2, statusReady("10.0.0.1")))
			ix.setPod(nil, pod("b-1", "b", "u9", "10.0.0.1", true))
		}, resolver.StateStarting, netip.Addr{}},
		{"status names the pod's old IP after an update changed it", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 2, statusReady("10.0.0.1")))
			old := pod("a-1", "a", "u1", "10.0.0.1", false)
			ix.setPod(nil, old)
			ix.setPod(old, pod("a-1", "a", "u1", "10.0.0.2", false))
		}, resolver.StateStarting, netip.Addr{}},
		{"status names another IP than the live pod", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 2, statusReady("10.0.0.1")))
			ix.setPod(nil, pod("a-2", "a", "u1", "10.0.0.2", false))
		}, resolver.StateStarting, netip.Addr{}},
		{"status names a deleted pod", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 2, statusReady("10.0.0.1")))
			old := pod("a-1", "a", "u1", "10.0.0.1", true)
			ix.setPod(nil, old)
			ix.deletePod(old)
		}, resolver.StateStarting, netip.Addr{}},
		{"status names a terminating pod", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 2, statusReady("10.0.0.1")))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", true, func(p *podRecord) { p.deleting = true }))
		}, resolver.StateStarting, netip.Addr{}},
		{"recreated pod with a new IP", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 2, statusReady("10.0.0.1")))
			old := pod("a-1", "a", "u1", "10.0.0.1", true)
			ix.setPod(nil, old)
			ix.deletePod(old)
			ix.setPod(nil, pod("a-2", "a", "u1", "10.0.0.2", true))
		}, resolver.StateRunning, ip2},
		{"pod of an earlier sandbox of the same name", func(ix *index) {
			ix.setSandbox(sb("a", "u2", 5))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", true))
		}, resolver.StateStarting, netip.Addr{}},
		{"suspending", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 3, suspended))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", true))
		}, resolver.StateSuspending, netip.Addr{}},
		{"suspended", func(ix *index) { ix.setSandbox(sb("a", "u1", 3, suspended)) }, resolver.StateSuspended, netip.Addr{}},
		{"a failed pod does not keep it suspending", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 3, suspended))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", false, func(p *podRecord) { p.terminal = true }))
		}, resolver.StateSuspended, netip.Addr{}},
		{"an older view has no say in suspension", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 5))
			ix.setSandbox(sb("a", "u1", 3, alpha, suspended))
		}, resolver.StateStarting, netip.Addr{}},
		{"suspended through v1alpha1 only", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 3))
			ix.setSandbox(sb("a", "u1", 3, alpha, suspended))
		}, resolver.StateSuspended, netip.Addr{}},
		{"finished", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 3, finished))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", true))
		}, resolver.StateFinished, netip.Addr{}},
		{"deleting", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 3, deleting))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", true))
		}, resolver.StateUnknown, netip.Addr{}},
		{"deleted", func(ix *index) {
			s := sb("a", "u1", 3)
			ix.setSandbox(s)
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", true))
			ix.deleteSandbox(s)
		}, resolver.StateUnknown, netip.Addr{}},
		{"warm-pool pod is not reachable by name", func(ix *index) {
			ix.setPod(nil, pod("a", "", "", "10.0.0.1", true, func(p *podRecord) { p.warmPool = true }))
		}, resolver.StateUnknown, netip.Addr{}},
		{"pod neither owned nor warm", func(ix *index) {
			ix.setPod(nil, pod("a", "", "", "10.0.0.1", true))
		}, resolver.StateUnknown, netip.Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := newTestIndex()
			tt.build(ix)
			got := ix.lookup(byName("a"))
			if got.State != tt.want || got.PodIP != tt.wantIP {
				t.Fatalf("got %v %v, want %v %v", got.State, got.PodIP, tt.want, tt.wantIP)
			}
		})
	}
}

// TestLookupByUID covers sandboxes and warm-pool pods found by UID, and
// adoption moving a warm-pool pod under a sandbox name.
func TestLookupByUID(t *testing.T) {
	ix := newTestIndex()
	ix.setSandbox(sb("a", "u1", 1))
	ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", true))
	if got := ix.lookup(resolver.Key{Namespace: "ns", UID: "u1"}); got.State != resolver.StateRunning || got.Name != "a" {
		t.Fatalf("by sandbox UID: %+v", got)
	}
	if got := ix.lookup(resolver.Key{Namespace: "other", UID: "u1"}); got.State != resolver.StateUnknown {
		t.Fatalf("UID in another namespace: %+v", got)
	}
	if got := ix.lookup(resolver.Key{Namespace: "ns", UID: "uid-a-1"}); got.State != resolver.StateUnknown {
		t.Fatalf("a claimed pod's UID must not resolve: %+v", got)
	}

	warm := pod("warm-x", "", "", "10.0.0.9", true, func(p *podRecord) { p.warmPool = true })
	ix.setPod(nil, warm)
	got := ix.lookup(resolver.Key{Namespace: "ns", UID: "uid-warm-x"})
	if got.State != resolver.StateRunning || got.Name != "warm-x" || got.PodIP != warm.ip {
		t.Fatalf("warm pod by UID: %+v", got)
	}
	if got := ix.lookup(byName("warm-x")); got.State != resolver.StateUnknown {
		t.Fatalf("warm pod by name: %+v", got)
	}

	// Adoption: the pod gets an owner and loses its warm-pool label.
	ch, release := ix.notify.wait(resolver.Key{Namespace: "ns", UID: "uid-warm-x"})
	defer release()
	ix.setSandbox(sb("b", "u2", 2))
	adopted := *warm
	adopted.warmPool, adopted.owner, adopted.ownerUID = false, "b", "u2"
	ix.setPod(warm, &adopted)
	select {
	case <-ch:
	default:
		t.Fatal("adoption did not notify the warm pod's waiters")
	}
	if got := ix.lookup(byName("b")); got.State != resolver.StateRunning || got.PodIP != warm.ip {
		t.Fatalf("adopted pod by sandbox name: %+v", got)
	}
	if got := ix.lookup(resolver.Key{Namespace: "ns", UID: "uid-warm-x"}); got.State != resolver.StateUnknown {
		t.Fatalf("adopted pod by its own UID: %+v", got)
	}
	if len(ix.warm) != 0 {
		t.Fatalf("warm entries left: %d", len(ix.warm))
	}
}

// TestWarmPodWaitersByName checks that waiters holding a warm-pool pod's
// key as the router builds it (its name and UID) are woken, and that an
// update that changes nothing wakes no one.
func TestWarmPodWaitersByName(t *testing.T) {
	ix := newTestIndex()
	warm := pod("warm-x", "", "", "", false, func(p *podRecord) { p.warmPool = true })
	ix.setPod(nil, warm)
	ch, release := ix.notify.wait(resolver.Key{Namespace: "ns", Name: "warm-x", UID: "uid-warm-x"})
	defer release()
	same := *warm
	ix.setPod(warm, &same)
	if closed(ch) {
		t.Fatal("woken by an update that changed nothing")
	}
	ready := same
	ready.ready, ready.ip = true, netip.MustParseAddr("10.0.0.9")
	ix.setPod(&same, &ready)
	if !closed(ch) {
		t.Fatal("not woken when the warm-pool pod became ready")
	}
}

// TestEntriesAreDropped checks that deleted sandboxes and pods leave no
// entry behind, whatever order their deletions arrive in.
func TestEntriesAreDropped(t *testing.T) {
	ix := newTestIndex()
	for i, order := range [][2]bool{{true, false}, {false, true}} {
		s := sb("a", types.UID("u"+string(rune('0'+i))), uint64(i))
		p := pod("a-1", "a", s.uid, "10.0.0.1", true)
		ix.setSandbox(s)
		ix.setPod(nil, p)
		for _, sandboxFirst := range order {
			if sandboxFirst {
				ix.deleteSandbox(s)
			} else {
				ix.deletePod(p)
			}
		}
		if len(ix.byName) != 0 || len(ix.byUID) != 0 || len(ix.warm) != 0 {
			t.Fatalf("order %v: left %d by name, %d by UID, %d warm", order, len(ix.byName), len(ix.byUID), len(ix.warm))
		}
	}
}

// TestLookupAllocatesNothing holds the hot path to zero allocations.
func TestLookupAllocatesNothing(t *testing.T) {
	ix := newTestIndex()
	ix.setSandbox(sb("a", "u1", 1))
	ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", true))
	k, ku := byName("a"), resolver.Key{Namespace: "ns", Name: "a", UID: "u1"}
	if n := testing.AllocsPerRun(1000, func() { ix.lookup(k); ix.lookup(ku) }); n != 0 {
		t.Fatalf("lookup allocates %v times", n)
	}
}

func BenchmarkLookup(b *testing.B) {
	ix := newTestIndex()
	for i := range 10000 {
		name := "sb-" + strconv.Itoa(i)
		ix.setSandbox(sb(name, types.UID("u-"+name), 1))
		ix.setPod(nil, pod(name+"-p", name, types.UID("u-"+name), "10.0.0.1", true))
	}
	k := byName("sb-0")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ix.lookup(k).State != resolver.StateRunning {
				b.Fatal("miss")
			}
		}
	})
}
