package xds

import (
	"context"
	"errors"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

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
