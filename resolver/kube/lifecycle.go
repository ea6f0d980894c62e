package kube

import (
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Spec is what a Kubernetes patcher needs to resume or suspend a sandbox:
// the version to patch through, and which field(s) suspend it now. A
// resume resets the fields that suspend it; a suspend sets operatingMode
// Suspended through v1beta1, replicas 0 through v1alpha1.
type Spec struct {
	// Version is the API version of the newest view: "v1beta1" or
	// "v1alpha1" (v1beta1 when both views are of the same write).
	Version string
	UID     string
	// ModeSuspended: spec.operatingMode is Suspended. ReplicasZero:
	// spec.replicas is 0. Either is true when any view of the newest write
	// shows it (a CRD that prunes the other version's field shows each
	// field in one view only), the rule by which the resolver calls the
	// sandbox suspended.
	ModeSuspended bool
	ReplicasZero  bool
	// Revision is the resourceVersion of the newest view, for a patch
	// precondition ("" if it is not a number, which an API server never
	// serves).
	Revision string
}

// Lifecycle returns the suspend/resume policy of the sandbox k names, from
// the annotations of its newest view. k names the sandbox by namespace and
// name (by UID when it has no name); a UID in a named key must be the
// sandbox's, so that a sandbox recreated under the same name is not taken
// for the one the caller means. It reports false for a sandbox that is not
// known, or is being deleted, and for warm-pool pods. It allocates only the
// Revision string.
func (r *Resolver) Lifecycle(k resolver.Key) (resolver.Lifecycle, bool) {
	return r.idx.lifecycle(k)
}

// SpecOf returns the suspension fields of the sandbox k names, by the
// rules of Lifecycle.
func (r *Resolver) SpecOf(k resolver.Key) (Spec, bool) { return r.idx.spec(k) }

// current returns the entry and the current view of the sandbox k names
// (see Lifecycle), or nil. The caller holds ix.mu.
func (ix *index) current(k resolver.Key) (*entry, *sandboxRecord) {
	var e *entry
	switch {
	case k.Name != "":
		e = ix.byName[nsName{k.Namespace, k.Name}]
	case k.UID != "":
		e = ix.byUID[types.UID(k.UID)]
	}
	if e == nil {
		return nil, nil
	}
	sb := e.current()
	if sb == nil || sb.namespace != k.Namespace || (k.UID != "" && string(sb.uid) != k.UID) {
		return nil, nil
	}
	return e, sb
}

func (ix *index) lifecycle(k resolver.Key) (resolver.Lifecycle, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if _, sb := ix.current(k); sb != nil {
		return sb.lifecycle(), true
	}
	return resolver.Lifecycle{}, false
}

func (ix *index) spec(k resolver.Key) (Spec, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	e, sb := ix.current(k)
	if sb == nil {
		return Spec{}, false
	}
	suspension := e.suspension(sb)
	return Spec{
		Version:       sb.version.String(),
		UID:           string(sb.uid),
		ModeSuspended: suspension&modeSuspended != 0,
		ReplicasZero:  suspension&replicasZero != 0,
		Revision:      revision(sb.resourceVersion),
	}, true
}

// lifecycle is the record's policy as the activator sees it.
func (sb *sandboxRecord) lifecycle() resolver.Lifecycle {
	lc := resolver.Lifecycle{
		IdleTimeout:    time.Duration(sb.idleTimeout) * time.Millisecond,
		IdleTimeoutSet: sb.flags&idleSet != 0,
		HoldTimeout:    time.Duration(sb.holdTimeout) * time.Millisecond,
		HoldTimeoutSet: sb.flags&holdSet != 0,
		Revision:       revision(sb.resourceVersion),
		Release:        sb.release,
	}
	if sb.flags&activitySet != 0 {
		lc.LastActivity = time.Unix(0, sb.lastActivity).UTC()
	}
	return lc
}

// revision formats a resource version; 0 is what one that did not parse
// became.
func revision(rv uint64) string {
	if rv == 0 {
		return ""
	}
	return strconv.FormatUint(rv, 10)
}

// invalidAnnotationNames names the annotations behind the invalid flags,
// with what a valid value looks like.
var invalidAnnotationNames = [...]struct {
	flag       sandboxFlags
	annotation string
	want       string
}{
	{idleInvalid, IdleTimeoutAnnotation, "a Go duration from 0 to 720h"},
	{holdInvalid, HoldTimeoutAnnotation, "a Go duration above 0, at most 1h"},
	{activityInvalid, LastActivityAnnotation, "an RFC 3339 time"},
	{releaseInvalid, ReleaseAnnotation, `"probe" or "ready"`},
}

// reportInvalid counts and logs (at debug level) annotations that became
// invalid on a sandbox. They are ignored: the sandbox behaves as if they
// were absent.
func (r *Resolver) reportInvalid(rec *sandboxRecord, bad sandboxFlags) {
	for _, a := range invalidAnnotationNames {
		if bad&a.flag == 0 {
			continue
		}
		r.invalidAnnotations.Add(1)
		r.log.Debug("ignoring an invalid sandbox annotation",
			"namespace", rec.namespace, "sandbox", rec.name, "annotation", a.annotation, "want", a.want)
	}
}
