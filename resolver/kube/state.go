package kube

import (
	"unique"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// entry is everything the resolver knows about one sandbox name (or, for an
// unclaimed warm-pool pod, one pod). Lookups compute its result from the
// records (a few comparisons, no allocation) rather than storing it: at
// 100,000 sandboxes a stored copy would cost a tenth of the memory budget.
type entry struct {
	namespace, name string
	// views holds the Sandbox as read through each watched API version.
	views [numVersions]*sandboxRecord
	// pods are the pods that name this sandbox as their owner (usually one;
	// two while a pod is replaced), or the warm-pool pod itself.
	pods []*podRecord
	// warm marks an entry that is an unclaimed warm-pool pod, warmUID
	// that pod's UID.
	warmUID types.UID
	warm    bool
	// sig is a digest of the last computed result and timeouts (see
	// signature), to tell a change (which wakes waiters) from an update
	// that changed nothing they care about.
	sig uint64
	// meta is the current view's details (Details) when last notified: a
	// new interned handle (one pointer compared, nothing hashed) notifies
	// too, so that views see a label or condition change.
	meta unique.Handle[sandboxMeta]
}

// sandbox returns the view to trust: the newest one, by resource version,
// among those watched. Views of different UIDs (a sandbox deleted and
// recreated under the same name, seen by one watch before the other)
// resolve to the newest too.
func (e *entry) sandbox() *sandboxRecord {
	var best *sandboxRecord
	for _, v := range e.views {
		if v != nil && (best == nil || v.resourceVersion > best.resourceVersion) {
			best = v
		}
	}
	return best
}

// current returns the newest view while the sandbox lives: nil for a
// warm-pool pod, for a sandbox not known (any more), and for one that is
// being deleted (as compute says unknown). Its annotations and spec are
// what the activator acts on.
func (e *entry) current() *sandboxRecord {
	if e.warm {
		return nil
	}
	sb := e.sandbox()
	if sb == nil {
		return nil
	}
	for _, v := range e.views {
		if v != nil && v.uid == sb.uid && v.deleting {
			return nil
		}
	}
	return sb
}

// suspension returns which spec fields ask for suspension in any view of
// sb's write, by the rule compute applies (an older view has no say).
func (e *entry) suspension(sb *sandboxRecord) sandboxFlags {
	var f sandboxFlags
	for _, v := range e.views {
		if v != nil && v.uid == sb.uid && v.resourceVersion == sb.resourceVersion {
			f |= v.flags & (modeSuspended | replicasZero)
		}
	}
	return f
}

func (e *entry) empty() bool {
	return len(e.pods) == 0 && e.sandbox() == nil
}

// compute derives the routing answer from the records.
func (e *entry) compute() resolver.Result {
	if e.warm {
		return e.computeWarm()
	}
	sb := e.sandbox()
	if sb == nil {
		// Pods whose Sandbox is not (or no longer) known route nowhere.
		return resolver.Result{}
	}
	res := resolver.Result{Namespace: sb.namespace, Name: sb.name, UID: string(sb.uid), Protocol: sb.protocol}
	suspend := false
	for _, v := range e.views {
		if v == nil || v.uid != sb.uid {
			continue
		}
		if v.deleting {
			// Going away: as good as deleted, and never resumable.
			return resolver.Result{}
		}
		// Views of the same write agree, unless the CRD prunes the
		// other version's field: then either asking for suspension
		// counts. An older view (its watch lagging, or its version no
		// longer served) has no say.
		if v.resourceVersion == sb.resourceVersion {
			suspend = suspend || v.suspended()
		}
	}
	if sb.finished == condTrue {
		res.State = resolver.StateFinished
		return res
	}
	var ready, live *podRecord
	anyPod := false // a pod that is still there or still going away
	for _, p := range e.pods {
		if p.ownerUID != sb.uid {
			continue // a pod of an earlier sandbox of the same name
		}
		if !p.terminal {
			anyPod = true
		}
		if !p.live() {
			continue
		}
		if live == nil {
			live = p
		}
		if ready == nil && p.ready && p.ip.IsValid() {
			ready = p
		}
	}
	switch {
	case suspend && anyPod:
		res.State = resolver.StateSuspending
	case suspend:
		res.State = resolver.StateSuspended
	case ready != nil:
		res.State, res.PodIP, res.H2CPorts = resolver.StateRunning, ready.ip, ready.facts().h2cPorts
	case sb.ready == condTrue && live != nil && sb.podIP.IsValid() && live.ip == sb.podIP:
		// The Sandbox status said Ready before this pod's own readiness
		// update arrived: trust it for the pod it names. A status IP
		// that no live pod of this sandbox holds is stale (the pod was
		// deleted, maybe before this router started) and may belong to
		// another sandbox's pod by now: never dial it.
		res.State, res.PodIP, res.H2CPorts = resolver.StateRunning, sb.podIP, live.facts().h2cPorts
	default:
		res.State = resolver.StateStarting
	}
	return res
}

// signature digests what waiters and feeds are told about: a result
// (FNV-1a over its fields); from the current view sb (nil when there is
// none), the idle and hold timeouts, so that an idle suspender learns a
// new timeout, and the release policy; and for a starting sandbox its
// candidate pod (nil when none) and that pod's address, so that the
// activator learns the moment a new pod appears, gets its address, or is
// replaced. The last-activity annotation and the resource version
// are left out on purpose: routers write the first often, and every write
// changes the second, so including them would wake every subscriber at
// every activity report. A collision only suppresses one wake-up, with
// odds of 2^-64.
func signature(r *resolver.Result, sb *sandboxRecord, cand *podRecord) uint64 {
	h := uint64(14695981039346656037)
	mix := func(b byte) { h = (h ^ uint64(b)) * 1099511628211 }
	mixString := func(s string) {
		for i := 0; i < len(s); i++ {
			mix(s[i])
		}
		mix(0)
	}
	mix(byte(r.State))
	mix(byte(r.Protocol))
	mixString(r.Namespace)
	mixString(r.Name)
	mixString(r.UID)
	for _, b := range r.PodIP.As16() {
		mix(b)
	}
	for _, p := range r.H2CPorts {
		mix(byte(p >> 8))
		mix(byte(p))
	}
	if cand != nil {
		mixString(cand.name)
		for _, b := range cand.ip.As16() {
			mix(b)
		}
	}
	if sb != nil {
		mix(byte(sb.release))
		mix(byte(sb.flags & (idleSet | holdSet)))
		for _, v := range [...]uint32{sb.idleTimeout, sb.holdTimeout} {
			mix(byte(v >> 24))
			mix(byte(v >> 16))
			mix(byte(v >> 8))
			mix(byte(v))
		}
	}
	return h
}

func (e *entry) computeWarm() resolver.Result {
	if len(e.pods) == 0 {
		return resolver.Result{}
	}
	p := e.pods[0]
	res := resolver.Result{Namespace: p.namespace, Name: p.name, UID: string(p.uid), State: resolver.StateStarting}
	switch {
	case !p.live():
		return resolver.Result{}
	case p.ready && p.ip.IsValid():
		res.State, res.PodIP, res.H2CPorts = resolver.StateRunning, p.ip, p.facts().h2cPorts
	}
	return res
}
