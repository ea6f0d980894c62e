package xds

import (
	"context"
	"errors"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// CreateDeltaWatch handles one delta request: it applies the request's
// (un)subscriptions to the index, reads its ACK or NACK, and answers at
// once when something is owed, else when something changes.
func (c *onDemand) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, first, err := c.subscriberFor(req, req.GetTypeUrl(), req.GetNode(), req.GetResponseNonce(), req.GetErrorDetail() != nil)
	if err != nil {
		return nil, err
	}
	k := s.kind
	now := c.now().UnixNano()
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
	return c.open(s, &watch{deltaReq: req, deltaCh: ch, sub: sub}), nil
}

// CreateWatch handles one state-of-the-world request the same way; the
// subscribed names are the request's whole list.
func (c *onDemand) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, _, err := c.subscriberFor(req, req.GetTypeUrl(), req.GetNode(), req.GetResponseNonce(), req.GetErrorDetail() != nil)
	if err != nil {
		return nil, err
	}
	now := c.now().UnixNano()
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
	return c.open(s, &watch{req: req, ch: ch, sub: sub}), nil
}

// subscriberFor is the subscription a request of either protocol is for,
// on the stream it came on (first: the stream's first request of the
// type); it reads the request's ACK or NACK of an earlier response.
// Called under c.mu.
func (c *onDemand) subscriberFor(req any, typeURL string, node *core.Node, nonce string, nack bool) (*subscriber, bool, error) {
	k := c.kinds[typeURL]
	if k == nil {
		return nil, false, errors.New("xds: no on-demand type " + typeURL)
	}
	st, err := c.streamFor(req, node.GetId(), isEnvoy(node))
	if err != nil {
		return nil, false, err
	}
	s, first := st.subscriber(k)
	c.acknowledge(s, nonce, nack)
	return s, first, nil
}

// open makes w the subscription's open watch, answers it at once when
// something is owed, and returns its cancel. Called under c.mu.
func (c *onDemand) open(s *subscriber, w *watch) func() {
	s.watch = w
	c.respond(s)
	return func() {
		c.mu.Lock()
		if s.watch == w {
			s.watch = nil
		}
		c.mu.Unlock()
	}
}

// Fetch (REST) is not served: on-demand resources need a stream.
func (c *onDemand) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("xds: fetch is not supported")
}
