package xds

import (
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// respond sends s what it is owed, if anything, on its open watch, which
// it consumes: one response per watch. The send under the cache's lock
// never blocks: the server's channel per stream has room for one response
// per type, it opens a type's next watch only after reading its last
// response, and this cache answers each watch at most once.
func (c *onDemand) respond(s *subscriber) {
	w := s.watch
	if w.deltaCh != nil {
		resp, ok := c.deltaResponse(s)
		if !ok {
			return
		}
		s.watch = nil
		c.metrics.pushes.WithLabelValues(s.kind.typeURL).Inc()
		w.deltaCh <- &cache.DeltaPassthroughResponse{DeltaRequest: w.deltaReq, NextVersionMap: s.returned, DeltaDiscoveryResponse: resp}
		return
	}
	resp, returned, ok := c.sotwResponse(s, w)
	if !ok {
		return
	}
	s.watch = nil
	c.metrics.pushes.WithLabelValues(s.kind.typeURL).Inc()
	w.ch <- &cache.PassthroughResponse{Request: w.req, DiscoveryResponse: resp, ReturnedResources: returned}
}

func (c *onDemand) rejectedVersion(s *subscriber, name string) (string, bool) {
	nm := c.nodes[s.st.node]
	if nm == nil || len(nm.rejected) == 0 {
		return "", false
	}
	v, ok := nm.rejected[s.kind.typeURL+" "+name]
	return v, ok
}

// deltaResponse builds the delta response s is owed: explicit subscribes
// (answered even when the client has the version), changed entries it
// does not have, and removals. A version the client rejected is never
// sent again; an explicit subscribe to one is answered as not found.
func (c *onDemand) deltaResponse(s *subscriber) (*discovery.DeltaDiscoveryResponse, bool) {
	resp := &discovery.DeltaDiscoveryResponse{TypeUrl: s.kind.typeURL}
	var rec sentResponse
	must := s.wildcard
	include := func(e *entry, explicit bool) {
		if e.resource == nil {
			if _, had := s.returned[e.name]; had {
				resp.RemovedResources = append(resp.RemovedResources, e.name)
				delete(s.returned, e.name)
			} else if explicit {
				resp.Resources = append(resp.Resources, c.notFound(s.kind, e.name))
			}
			return
		}
		if v, ok := c.rejectedVersion(s, e.name); ok && v == e.version {
			if explicit {
				resp.Resources = append(resp.Resources, c.notFound(s.kind, e.name))
			}
			return
		}
		if !explicit && s.returned[e.name] == e.version {
			return
		}
		if explicit && s.kind.aliased {
			r := e.resource // shares the packed virtual host
			resp.Resources = append(resp.Resources, &discovery.Resource{
				Name: r.Name, Version: r.Version, Resource: r.Resource, Aliases: []string{e.name}})
		} else {
			resp.Resources = append(resp.Resources, e.resource)
		}
		s.returned[e.name] = e.version
		rec.names = append(rec.names, e.name)
		rec.versions = append(rec.versions, e.version)
		if !e.changedAt.IsZero() && (rec.changedAt.IsZero() || e.changedAt.Before(rec.changedAt)) {
			rec.changedAt = e.changedAt
		}
	}
	for _, e := range s.answer {
		include(e, true)
		delete(s.dirty, e)
		must = true
	}
	for e := range s.dirty {
		include(e, false)
	}
	for _, name := range s.removals {
		if _, again := s.names[name]; again {
			continue // asked for again since it went cold: it stays
		}
		if _, had := s.returned[name]; had {
			resp.RemovedResources = append(resp.RemovedResources, name)
			delete(s.returned, name)
		}
	}
	if s.wildcard && s.kind.namespace != "" {
		// Envoy's first VHDS request subscribes to the route
		// configuration's name; an answer that removes a name it never
		// had completes its initial fetch with no virtual host.
		resp.RemovedResources = append(resp.RemovedResources, s.kind.namespace+"/")
	}
	if !must && len(resp.Resources) == 0 && len(resp.RemovedResources) == 0 {
		return nil, false
	}
	s.answer, s.removals, s.wildcard = s.answer[:0], s.removals[:0], false
	clear(s.dirty)
	rec.delta = resp
	s.record(rec)
	return resp, true
}

// notFound is the answer to an explicit subscribe the cache has no
// resource for: the name (and alias) with no body, which tells Envoy's
// on-demand fetch not to wait.
func (c *onDemand) notFound(k *kind, name string) *discovery.Resource {
	r := &discovery.Resource{Name: name}
	if k.aliased {
		r.Aliases = []string{name}
	}
	return r
}

// sotwResponse builds a state-of-the-world response for s: sent when a
// subscribed resource is new to the client, changed, or gone. Listeners
// and clusters carry every subscribed resource; endpoints only the
// changed ones.
func (c *onDemand) sotwResponse(s *subscriber, w *watch) (*discovery.DiscoveryResponse, map[string]string, bool) {
	returned := w.sub.ReturnedResources()
	var rec sentResponse
	changed := len(s.answer) > 0
	for name, h := range s.names {
		e := h.e
		v, had := returned[name]
		if (e.resource == nil) == had || (e.resource != nil && v != e.version) {
			changed = true
		}
	}
	for name := range returned {
		if _, ok := s.names[name]; !ok && s.kind.fullState {
			changed = true // unsubscribed: the full state shrinks
		}
	}
	if !changed {
		return nil, nil, false
	}
	c.version++
	resp := &discovery.DiscoveryResponse{TypeUrl: s.kind.typeURL, VersionInfo: versionInfo(c.version)}
	next := make(map[string]string, len(s.names))
	if !s.kind.fullState {
		for name, v := range returned {
			if _, ok := s.names[name]; ok {
				next[name] = v
			}
		}
	}
	for name, h := range s.names {
		e := h.e
		if e.resource == nil {
			continue
		}
		if !s.kind.fullState && returned[name] == e.version {
			continue
		}
		resp.Resources = append(resp.Resources, e.resource.Resource)
		next[name] = e.version
		rec.names = append(rec.names, name)
		rec.versions = append(rec.versions, e.version)
		if !e.changedAt.IsZero() && (rec.changedAt.IsZero() || e.changedAt.Before(rec.changedAt)) {
			rec.changedAt = e.changedAt
		}
	}
	s.answer = s.answer[:0]
	clear(s.dirty)
	rec.sotw = resp
	s.record(rec)
	return resp, next, true
}

func (s *subscriber) record(r sentResponse) {
	s.sent[s.next] = r
	s.next = (s.next + 1) % len(s.sent)
}

// sentFor is the recorded response the client's request refers to.
func (s *subscriber) sentFor(nonce string) *sentResponse {
	if nonce == "" {
		return nil
	}
	for i := range s.sent {
		r := &s.sent[i]
		switch {
		case r.delta != nil && r.delta.GetNonce() == nonce, r.sotw != nil && r.sotw.GetNonce() == nonce:
			return r
		}
	}
	return nil
}

// acknowledge reads an ACK or NACK of an earlier response: a NACK marks
// its versions rejected for the client's node, an ACK times the push.
func (c *onDemand) acknowledge(s *subscriber, nonce string, nack bool) {
	r := s.sentFor(nonce)
	if r == nil {
		if nack {
			c.metrics.nacks.WithLabelValues(s.kind.typeURL).Inc()
		}
		return
	}
	if nack {
		c.metrics.nacks.WithLabelValues(s.kind.typeURL).Inc()
		nm := c.nodes[s.st.node]
		for i, name := range r.names {
			nm.rejected[s.kind.typeURL+" "+name] = r.versions[i]
		}
	} else if !r.changedAt.IsZero() {
		c.metrics.pushSeconds.Observe(c.now().Sub(r.changedAt).Seconds())
	}
	*r = sentResponse{}
}
