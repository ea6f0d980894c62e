package xds

import (
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
	// (VHDS): an answer to a subscribe lists the name as its alias too.
	// A push of a change does not (Envoy reads aliases only to release
	// the requests that wait for an on-demand answer), which keeps it
	// small.
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
	streams   map[streamID]*stream
	nodes     map[string]*nodeMemory
	version   int64 // state-of-the-world version_info counter
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
	e.version, e.resource, e.changedAt = version, res, seen
	return true
}
