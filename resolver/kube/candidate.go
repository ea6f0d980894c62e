package kube

import (
	"github.com/sandbox-router/sandbox-router/resolver"
)

// Candidate returns the pod the starting sandbox k names (by namespace
// and name) is coming up on, so that the activator can probe it before
// Kubernetes calls it Ready. It reports false unless the sandbox is
// starting and exactly one live pod carries its controller reference: with
// two (a pod being replaced by another the controller already made) the
// router does not guess which will serve, and waits for Ready.
func (r *Resolver) Candidate(k resolver.Key) (resolver.Candidate, bool) {
	return r.idx.candidate(k)
}

func (ix *index) candidate(k resolver.Key) (resolver.Candidate, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	e := ix.byName[nsName{k.Namespace, k.Name}]
	if e == nil {
		return resolver.Candidate{}, false
	}
	if res := e.compute(); res.State != resolver.StateStarting || (k.UID != "" && res.UID != k.UID) {
		return resolver.Candidate{}, false
	}
	p := e.candidate()
	if p == nil {
		return resolver.Candidate{}, false
	}
	spec := p.facts()
	return resolver.Candidate{Pod: p.name, PodIP: p.ip, H2CPorts: spec.h2cPorts, Readiness: spec.readinessOf()}, true
}

// candidate returns the one live pod that the current Sandbox controls,
// or nil when there is none or more than one. The pod must name the
// Sandbox's UID: a pod of an earlier sandbox of the same name is never
// one.
func (e *entry) candidate() *podRecord {
	sb := e.current()
	if sb == nil {
		return nil
	}
	var found *podRecord
	for _, p := range e.pods {
		if p.ownerUID != sb.uid || !p.live() {
			continue
		}
		if found != nil {
			return nil
		}
		found = p
	}
	return found
}
