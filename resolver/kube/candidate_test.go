package kube

import (
	"net/netip"
	"testing"
	"unique"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// TestCandidate checks which pod a starting sandbox offers for probing:
// only its own single live pod, and never while it is suspended, running
// or unknown.
func TestCandidate(t *testing.T) {
	readiness := resolver.Readiness{Checks: [resolver.MaxReadinessChecks]resolver.Check{{Kind: resolver.CheckHTTP, Port: 8888, Path: "/ready", TimeoutSeconds: 1}}}
	probe := podSpec{readiness: unique.Make(readiness)}
	withSpec := func(p *podRecord) { p.spec = unique.Make(probe) }
	tests := []struct {
		name  string
		build func(ix *index)
		want  string // candidate pod name; "" for none
		ip    string
	}{
		{"no sandbox", func(ix *index) {}, "", ""},
		{"no pod yet", func(ix *index) { ix.setSandbox(sb("a", "u1", 1)) }, "", ""},
		{"pod without address", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 1))
			ix.setPod(nil, pod("a-1", "a", "u1", "", false, withSpec))
		}, "a-1", ""},
		{"pod with address, not ready", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 1))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", false, withSpec))
		}, "a-1", "10.0.0.1"},
		{"ready: running, no candidate", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 1))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", true, withSpec))
		}, "", ""},
		{"a pod of an earlier sandbox of the same name", func(ix *index) {
			ix.setSandbox(sb("a", "u2", 2))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", false, withSpec))
		}, "", ""},
		{"being deleted", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 1))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", false, withSpec, func(p *podRecord) { p.deleting = true }))
		}, "", ""},
		{"replaced: the old one terminating, the new one starting", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 1))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", false, withSpec, func(p *podRecord) { p.deleting = true }))
			ix.setPod(nil, pod("a-2", "a", "u1", "10.0.0.2", false, withSpec))
		}, "a-2", "10.0.0.2"},
		{"two live pods: no guess", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 1))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", false, withSpec))
			ix.setPod(nil, pod("a-2", "a", "u1", "10.0.0.2", false, withSpec))
		}, "", ""},
		{"suspended with its pod still there", func(ix *index) {
			ix.setSandbox(sb("a", "u1", 1, suspended))
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", false, withSpec))
		}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := newTestIndex()
			tt.build(ix)
			c, ok := ix.candidate(byName("a"))
			if ok != (tt.want != "") || c.Pod != tt.want {
				t.Fatalf("candidate %+v, %v; want %q", c, ok, tt.want)
			}
			if !ok {
				return
			}
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			if c.PodIP != ip || c.Readiness != readiness {
				t.Fatalf("candidate %+v, want IP %v and the pod's readiness", c, ip)
			}
			if _, ok := ix.candidate(resolver.Key{Namespace: "ns", Name: "a", UID: "other"}); ok {
				t.Fatal("a key with another sandbox's UID got a candidate")
			}
		})
	}
}

// TestCandidateChangesWake checks that the activator, waiting on a
// starting sandbox, is woken when its pod appears, gets an address, and is
// replaced, though the routing answer (starting) stays the same; and when
// the release policy changes.
func TestCandidateChangesWake(t *testing.T) {
	ix := newTestIndex()
	ix.setSandbox(sb("a", "u1", 1))
	steps := []struct {
		name  string
		apply func()
		wake  bool
	}{
		{"pod created", func() { ix.setPod(nil, pod("a-1", "a", "u1", "", false)) }, true},
		{"pod updated, nothing new", func() { ix.setPod(nil, pod("a-1", "a", "u1", "", false)) }, false},
		{"address", func() { ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", false)) }, true},
		{"terminating", func() {
			ix.setPod(nil, pod("a-1", "a", "u1", "10.0.0.1", false, func(p *podRecord) { p.deleting = true }))
		}, true},
		{"replacement", func() { ix.setPod(nil, pod("a-2", "a", "u1", "10.0.0.2", false)) }, true},
		{"release policy", func() {
			ix.setSandbox(sb("a", "u1", 2, func(r *sandboxRecord) { r.release = resolver.ReleaseOnReady }))
		}, true},
	}
	for _, st := range steps {
		ch, release := ix.notify.wait(byName("a"))
		st.apply()
		if closed(ch) != st.wake {
			t.Fatalf("%s: woken %v, want %v", st.name, closed(ch), st.wake)
		}
		release()
	}
}
