package xds

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Lookup is the part of the resolver the cache reads.
type Lookup interface {
	Lookup(resolver.Key) resolver.Result
}

// kind is one resource type the on-demand cache builds from a name.
type kind struct {
	typeURL string
	// target reads which sandbox port a name depends on; valid is false
	// for a name this type can never have.
	target func(name string) (t target, valid bool)
	// build is the resource's version and content for the sandbox's
	// current state (nil: no such resource).
	build func(name string, t target, r resolver.Result, routers routerSet) (string, proto.Message)
	// routers: the content depends on the router fleet's endpoints.
	routers bool
	// fullState: a state-of-the-world response must carry every
	// subscribed resource of the type (Listeners, Clusters).
	fullState bool
	// aliased: the client asks by alias and matches the answer by it
	// (VHDS); the resource lists its own name as its alias.
	aliased bool
	// namespace is a name that subscribes to a whole collection rather
	// than a resource (VHDS: the route configuration's name); it is
	// answered with nothing, as a wildcard request is.
	namespace string
}

type routerSet struct {
	addrs   []netip.AddrPort
	version string
}

// entry is one named resource some stream holds, built once for all of
// them. Entries exist only while subscribed.
type entry struct {
	kind      *kind
	name      string
	t         target
	version   string
	resource  *discovery.Resource // nil: no such resource; shared, read-only
	changedAt time.Time           // when the change that made version was seen
	subs      []*subscriber
}

// stream is one client stream (delta or state of the world).
type stream struct {
	id    int64
	delta bool
	node  string
	envoy bool
	types map[string]*subscriber
}

// subscriber is one stream's subscription to one type.
type subscriber struct {
	st   *stream
	kind *kind
	// names are the resources it holds, with when it last asked for each.
	names map[string]held
	watch *watch
	// dirty entries changed since the last response; answer are explicit
	// subscribes to answer even if nothing changed; removals are cold
	// names to tell the client to drop.
	dirty    map[*entry]struct{}
	answer   []*entry
	removals []string
	// wildcard: a namespace or wildcard subscribe awaits its (empty) answer.
	wildcard bool
	// returned is what the client holds (delta), handed to the server as
	// the next version map; the server only stores it.
	returned map[string]string
	// sent are the latest responses, for NACK attribution and ACK timing.
	sent [8]sentResponse
	next int
}

type held struct {
	e     *entry
	since int64 // unix nanoseconds of the last subscribe
}

type watch struct {
	deltaReq *cache.DeltaRequest
	deltaCh  chan cache.DeltaResponse
	req      *cache.Request
	sub      cache.Subscription
	ch       chan cache.Response
}

type sentResponse struct {
	delta     *discovery.DeltaDiscoveryResponse
	sotw      *discovery.DiscoveryResponse
	names     []string
	versions  []string
	changedAt time.Time // earliest resolver change it carries; zero for none
}

// nodeMemory is what the cache remembers of a client across its streams:
// the versions it rejected, so that no reconnect is sent them again.
type nodeMemory struct {
	rejected map[string]string // typeURL + " " + name -> version
	streams  int
	lastSeen time.Time
}

// onDemand is the cache behind virtual hosts and the proxyless view. It
// implements go-control-plane's cache.Cache for the types in kinds. Its
// work on a resolver change is proportional to the streams holding the
// changed sandbox's names, not to the number of sandboxes or clients.
type onDemand struct {
	lookup  Lookup
	kinds   map[string]*kind
	metrics *Metrics
	now     func() time.Time
	// maxNames bounds the names one stream may hold per type.
	maxNames int

	mu      sync.Mutex
	entries map[string]map[string]*entry // typeURL -> name -> entry
	byKey   map[resolver.Key][]*entry
	routers routerSet
	// pending bridges a request, seen first by the server's callback
	// (which knows its stream ID), to the watch the server creates for it
	// next; pendingOf is each stream's pending request, so that a request
	// the server drops without a watch (a stale nonce) is forgotten when
	// the next one comes.
	pending   map[any]streamID
	pendingOf map[streamID]any
	streams map[streamID]*stream
	nodes   map[string]*nodeMemory
	version int64 // state-of-the-world version_info counter
}

type streamID struct {
	delta bool
	id    int64
}

func newOnDemand(lookup Lookup, kinds []*kind, m *Metrics, maxNames int) *onDemand {
	c := &onDemand{
		lookup: lookup, kinds: map[string]*kind{}, metrics: m, now: time.Now, maxNames: maxNames,
		entries: map[string]map[string]*entry{}, byKey: map[resolver.Key][]*entry{},
		pending: map[any]streamID{}, pendingOf: map[streamID]any{}, streams: map[streamID]*stream{}, nodes: map[string]*nodeMemory{},
	}
	for _, k := range kinds {
		c.kinds[k.typeURL] = k
		c.entries[k.typeURL] = map[string]*entry{}
	}
	c.routers.version = routersVersion(nil)
	return c
}

var errNoStream = errors.New("xds: a watch for a request no stream callback saw")

// ---- The server's side: streams open, ask and close.

// noteRequest records which stream a request arrived on; the server calls
// its callbacks just before it creates the watch.
func (c *onDemand) noteRequest(req any, sid streamID) {
	c.mu.Lock()
	if old, ok := c.pendingOf[sid]; ok {
		delete(c.pending, old)
	}
	c.pending[req] = sid
	c.pendingOf[sid] = req
	c.mu.Unlock()
}

// streamFor finds (or starts) the stream a request arrived on.
func (c *onDemand) streamFor(req any, nodeID string, envoy bool) (*stream, error) {
	sid, ok := c.pending[req]
	if !ok {
		return nil, errNoStream
	}
	delete(c.pending, req)
	delete(c.pendingOf, sid)
	st := c.streams[sid]
	if st == nil {
		st = &stream{id: sid.id, delta: sid.delta, node: nodeID, envoy: envoy, types: map[string]*subscriber{}}
		c.streams[sid] = st
		nm := c.nodes[nodeID]
		if nm == nil {
			nm = &nodeMemory{rejected: map[string]string{}}
			c.nodes[nodeID] = nm
		}
		nm.streams++
	}
	return st, nil
}

func (st *stream) subscriber(k *kind) (*subscriber, bool) {
	s := st.types[k.typeURL]
	if s != nil {
		return s, false
	}
	s = &subscriber{st: st, kind: k, names: map[string]held{}, dirty: map[*entry]struct{}{}, returned: map[string]string{}}
	st.types[k.typeURL] = s
	return s, true
}

// closeStream drops everything a stream held.
func (c *onDemand) closeStream(delta bool, id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sid := streamID{delta, id}
	if req, ok := c.pendingOf[sid]; ok {
		delete(c.pending, req)
		delete(c.pendingOf, sid)
	}
	st := c.streams[sid]
	if st == nil {
		return
	}
	delete(c.streams, sid)
	for _, s := range st.types {
		for name := range s.names {
			c.unsubscribe(s, name)
		}
	}
	if nm := c.nodes[st.node]; nm != nil {
		nm.streams--
		nm.lastSeen = c.now()
	}
}

// ---- The index: which stream holds which name.

// subscribe adds name to s, building its entry if it is new. It reports
// false when s holds too many names already.
func (c *onDemand) subscribe(s *subscriber, name string, now int64) (*entry, bool) {
	if h, ok := s.names[name]; ok {
		h.since = now
		s.names[name] = h
		return h.e, true
	}
	e := c.entries[s.kind.typeURL][name]
	if e == nil {
		if len(s.names) >= c.maxNames {
			return nil, false
		}
		e = &entry{kind: s.kind, name: name}
		var valid bool
		e.t, valid = s.kind.target(name)
		if valid && e.t.ok {
			c.byKey[e.t.key] = append(c.byKey[e.t.key], e)
		}
		if valid {
			c.build(e, time.Time{})
		}
		c.entries[s.kind.typeURL][name] = e
	} else if len(s.names) >= c.maxNames {
		return nil, false
	}
	e.subs = append(e.subs, s)
	s.names[name] = held{e: e, since: now}
	c.metrics.subscriptions.WithLabelValues(s.kind.typeURL).Inc()
	return e, true
}

func (c *onDemand) unsubscribe(s *subscriber, name string) {
	h, ok := s.names[name]
	if !ok {
		return
	}
	delete(s.names, name)
	delete(s.dirty, h.e)
	c.metrics.subscriptions.WithLabelValues(s.kind.typeURL).Dec()
	e := h.e
	for i, x := range e.subs {
		if x == s {
			e.subs[i] = e.subs[len(e.subs)-1]
			e.subs[len(e.subs)-1] = nil
			e.subs = e.subs[:len(e.subs)-1]
			break
		}
	}
	if len(e.subs) > 0 {
		return
	}
	delete(c.entries[e.kind.typeURL], e.name)
	if e.t.ok {
		list := c.byKey[e.t.key]
		for i, x := range list {
			if x == e {
				list[i] = list[len(list)-1]
				list[len(list)-1] = nil
				list = list[:len(list)-1]
				break
			}
		}
		if len(list) == 0 {
			delete(c.byKey, e.t.key)
		} else {
			c.byKey[e.t.key] = list
		}
	}
}

// build (re)computes an entry from the resolver; it reports whether the
// version changed.
func (c *onDemand) build(e *entry, seen time.Time) bool {
	var r resolver.Result
	if e.t.ok {
		r = c.lookup.Lookup(e.t.key)
	}
	version, msg := e.kind.build(e.name, e.t, r, c.routers)
	if msg == nil {
		if e.resource == nil && e.version == "" {
			return false
		}
		e.version, e.resource, e.changedAt = "", nil, seen
		return true
	}
	if version == e.version && e.resource != nil {
		return false
	}
	res := &discovery.Resource{Name: e.name, Version: version, Resource: mustAny(msg)}
	if e.kind.aliased {
		res.Aliases = []string{e.name}
	}
	e.version, e.resource, e.changedAt = version, res, seen
	return true
}

// ---- Changes: the resolver's feed and the router fleet.

// run follows the resolver's feed until ctx ends.
func (c *onDemand) run(ctx context.Context, feed resolver.Feed) error {
	defer feed.Close()
	for {
		keys, err := feed.Next(ctx)
		if err != nil {
			return err
		}
		c.changed(keys, c.now())
	}
}

// changed rebuilds the entries of changed sandboxes and pushes them to
// the streams that hold them.
func (c *onDemand) changed(keys []resolver.Key, seen time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if k.Name == "" {
			continue // a warm-pool pod: no host names it
		}
		for _, e := range c.byKey[resolver.Key{Namespace: k.Namespace, Name: k.Name}] {
			if c.build(e, seen) {
				c.markDirty(e)
			}
		}
	}
}

// setRouters replaces the router fleet's endpoints.
func (c *onDemand) setRouters(addrs []netip.AddrPort) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.routers = routerSet{addrs: addrs, version: routersVersion(addrs)}
	seen := c.now()
	for _, k := range c.kinds {
		if !k.routers {
			continue
		}
		for _, e := range c.entries[k.typeURL] {
			if c.build(e, seen) {
				c.markDirty(e)
			}
		}
	}
}

func (c *onDemand) markDirty(e *entry) {
	for _, s := range e.subs {
		s.dirty[e] = struct{}{}
		if s.watch != nil {
			c.respond(s)
		}
	}
}

// sweepCold tells clients to drop names they have not asked for since
// cutoff (for kinds fetched on demand: a client asks again when it needs
// one), which bounds the working set of every Envoy.
func (c *onDemand) sweepCold(cutoff time.Time, forgetNodesBefore time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := cutoff.UnixNano()
	for _, st := range c.streams {
		if !st.delta {
			continue
		}
		for _, s := range st.types {
			if !s.kind.aliased {
				continue
			}
			n := 0
			for name, h := range s.names {
				if h.since < limit {
					c.unsubscribe(s, name)
					s.removals = append(s.removals, name)
					n++
				}
			}
			if n > 0 {
				c.metrics.coldRemovals.Add(float64(n))
				if s.watch != nil {
					c.respond(s)
				}
			}
		}
	}
	for id, nm := range c.nodes {
		if nm.streams == 0 && nm.lastSeen.Before(forgetNodesBefore) {
			delete(c.nodes, id)
		}
	}
}

// ---- Responses.

// respond sends s what it is owed, if anything, on its open watch, which
// it consumes: one response per watch.
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
		resp.Resources = append(resp.Resources, e.resource)
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

// ---- go-control-plane's cache.Cache.

// CreateDeltaWatch handles one delta request: it applies the request's
// (un)subscriptions to the index, reads its ACK or NACK, and answers at
// once when something is owed, else when something changes.
func (c *onDemand) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	k := c.kinds[req.GetTypeUrl()]
	if k == nil {
		return nil, errors.New("xds: no on-demand type " + req.GetTypeUrl())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.streamFor(req, req.GetNode().GetId(), isEnvoy(req.GetNode()))
	if err != nil {
		return nil, err
	}
	s, first := st.subscriber(k)
	now := c.now().UnixNano()
	c.acknowledge(s, req.GetResponseNonce(), req.GetErrorDetail() != nil)
	subscribe := req.GetResourceNamesSubscribe()
	if first {
		// initial_resource_versions: what the client already has, so a
		// reconnect is sent only what changed since.
		for name, v := range sub.ReturnedResources() {
			s.returned[name] = v
		}
		if sub.IsWildcard() {
			s.wildcard = true
		}
	}
	for _, name := range subscribe {
		if name == "*" || (k.namespace != "" && name == k.namespace) {
			s.wildcard = true
			continue
		}
		e, ok := c.subscribe(s, name, now)
		if !ok {
			s.answer = append(s.answer, &entry{kind: k, name: name}) // over the cap: not found
			continue
		}
		if _, has := s.returned[name]; first && has {
			s.dirty[e] = struct{}{} // resend only if its version moved
			continue
		}
		s.answer = append(s.answer, e)
	}
	for _, name := range req.GetResourceNamesUnsubscribe() {
		c.unsubscribe(s, name)
		delete(s.returned, name)
	}
	w := &watch{deltaReq: req, deltaCh: ch, sub: sub}
	s.watch = w
	c.respond(s)
	return func() { c.cancel(s, w) }, nil
}

// CreateWatch handles one state-of-the-world request the same way; the
// subscribed names are the request's whole list.
func (c *onDemand) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	k := c.kinds[req.GetTypeUrl()]
	if k == nil {
		return nil, errors.New("xds: no on-demand type " + req.GetTypeUrl())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.streamFor(req, req.GetNode().GetId(), isEnvoy(req.GetNode()))
	if err != nil {
		return nil, err
	}
	s, _ := st.subscriber(k)
	now := c.now().UnixNano()
	c.acknowledge(s, req.GetResponseNonce(), req.GetErrorDetail() != nil)
	want := sub.SubscribedResources()
	for name := range s.names {
		if _, ok := want[name]; !ok {
			c.unsubscribe(s, name)
		}
	}
	for name := range want {
		if _, ok := s.names[name]; ok {
			continue
		}
		if e, ok := c.subscribe(s, name, now); ok {
			s.answer = append(s.answer, e)
		}
	}
	w := &watch{req: req, ch: ch, sub: sub}
	s.watch = w
	c.respond(s)
	return func() { c.cancel(s, w) }, nil
}

func (c *onDemand) cancel(s *subscriber, w *watch) {
	c.mu.Lock()
	if s.watch == w {
		s.watch = nil
	}
	c.mu.Unlock()
}

// Fetch (REST) is not served: on-demand resources need a stream.
func (c *onDemand) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("xds: fetch is not supported")
}
