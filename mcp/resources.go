package mcp

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// A caller's sandboxes are its server's resources, sandbox://<ns>/<name>,
// each read as the sandbox's JSON state. The list follows the resolver's
// feed: a sandbox the caller may reach appears (notifications/resources/
// list_changed), one that goes away or out of reach disappears, and a
// change of state is sent to the sessions subscribed to the sandbox
// (notifications/resources/updated), so a client sees it suspend or wake.

const uriScheme = "sandbox://"

func sandboxURI(key resolver.Key) string { return uriScheme + key.Namespace + "/" + key.Name }

// parseSandboxURI is the inverse of sandboxURI; false for anything else.
func parseSandboxURI(uri string) (resolver.Key, bool) {
	rest, ok := strings.CutPrefix(uri, uriScheme)
	if !ok {
		return resolver.Key{}, false
	}
	ns, name, ok := strings.Cut(rest, "/")
	if !ok || !resolver.IsDNSLabel(ns) || !resolver.IsDNSLabel(name) {
		return resolver.Key{}, false
	}
	return resolver.Key{Namespace: ns, Name: name}, true
}

// resources keeps one caller's resource list. Changes are queued (a set
// of keys, bounded by the sandboxes there are) and applied by one
// goroutine per caller at a time, each key from its state at that moment:
// a caller whose client reads its notifications slowly delays only its
// own list, and an older view never overwrites a newer one.
type resources struct {
	h *Handler
	p access.Principal // as first authenticated: whose list it is

	mu      sync.Mutex
	server  *sdk.Server
	known   map[resolver.Key]resolver.State
	pending map[resolver.Key]struct{}
	running bool // a drain goroutine is at work
}

func newResources(h *Handler, p access.Principal) *resources {
	return &resources{h: h, p: p, known: make(map[resolver.Key]resolver.State), pending: make(map[resolver.Key]struct{})}
}

// reviewTimeout bounds the access reviews of one update.
const reviewTimeout = 10 * time.Second

// attach gives the list its server and fills it.
func (r *resources) attach(s *sdk.Server) {
	r.mu.Lock()
	r.server = s
	r.mu.Unlock()
	go r.refresh(context.Background())
}

// refresh queues every sandbox the caller reaches now and every one its
// list holds (which may have gone out of reach).
func (r *resources) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	list, _, err := r.h.visible(ctx, r.p, "", r.h.limits.Reviews)
	if err != nil {
		return // the next refresh or change tries again; nothing is removed on silence
	}
	keys := make([]resolver.Key, 0, len(list))
	for _, res := range list {
		keys = append(keys, resolver.Key{Namespace: res.Namespace, Name: res.Name})
	}
	r.mu.Lock()
	for k := range r.known {
		keys = append(keys, k)
	}
	r.mu.Unlock()
	r.changed(keys)
}

// changed queues keys (name keys; a warm-pool pod's UID key is nobody's
// sandbox) and starts the caller's drain if none runs.
func (r *resources) changed(keys []resolver.Key) {
	r.mu.Lock()
	for _, k := range keys {
		if k.UID == "" {
			r.pending[k] = struct{}{}
		}
	}
	start := !r.running && len(r.pending) > 0
	r.running = r.running || start
	r.mu.Unlock()
	if start {
		go r.drain()
	}
}

// drain applies the queued keys until none is left.
func (r *resources) drain() {
	for {
		r.mu.Lock()
		if len(r.pending) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		keys := make([]resolver.Key, 0, len(r.pending))
		for k := range r.pending {
			keys = append(keys, k)
		}
		clear(r.pending)
		r.mu.Unlock()
		r.apply(keys)
	}
}

// apply brings keys' resources to their state now: each is looked up and
// its access reviewed (no lock held), the list changed under the lock,
// and the server told after it (its notifications may block on a slow
// client).
func (r *resources) apply(keys []resolver.Key) {
	ctx, cancel := context.WithTimeout(context.Background(), reviewTimeout)
	defer cancel()
	type state struct {
		key   resolver.Key
		res   resolver.Result
		reach bool
	}
	states := make([]state, 0, len(keys))
	for _, k := range keys {
		res := r.h.opts.Sandboxes.Lookup(k)
		reach := false
		if res.State != resolver.StateUnknown {
			ok, err := r.h.opts.Access.Reaches(ctx, r.p, k)
			if err != nil {
				continue // unknown now: left as it is
			}
			reach = ok
		}
		states = append(states, state{k, res, reach})
	}
	var gone []string
	var added []*sdk.Resource
	var updated []string
	r.mu.Lock()
	server := r.server
	for _, st := range states {
		old, had := r.known[st.key]
		uri := sandboxURI(st.key)
		switch {
		case !st.reach && had:
			delete(r.known, st.key)
			gone = append(gone, uri)
		case st.reach && had && old == st.res.State:
		case st.reach && (had || len(r.known) < r.h.limits.Resources):
			r.known[st.key] = st.res.State
			added = append(added, &sdk.Resource{URI: uri, Name: st.key.Namespace + "/" + st.key.Name, MIMEType: "application/json",
				Description: "sandbox " + st.key.Namespace + "/" + st.key.Name + ": " + st.res.State.String()})
			if had {
				updated = append(updated, uri)
			}
		}
	}
	r.mu.Unlock()
	if len(gone) > 0 {
		server.RemoveResources(gone...)
	}
	for _, res := range added {
		server.AddResource(res, r.read)
	}
	for _, uri := range updated {
		_ = server.ResourceUpdated(ctx, &sdk.ResourceUpdatedNotificationParams{URI: uri})
	}
}

// read answers resources/read of a sandbox, checked again for the caller
// reading it.
func (r *resources) read(ctx context.Context, req *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
	key, ok := parseSandboxURI(req.Params.URI)
	c := callerOf(req.Extra)
	if !ok || c == nil {
		return nil, sdk.ResourceNotFoundError(req.Params.URI)
	}
	if err := r.h.reach(ctx, c, key); err != nil {
		return nil, sdk.ResourceNotFoundError(req.Params.URI)
	}
	b, err := json.Marshal(infoOf(key, r.h.opts.Sandboxes.Lookup(key)))
	if err != nil {
		return nil, err
	}
	return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{{URI: req.Params.URI, MIMEType: "application/json", Text: string(b)}}}, nil
}

// subscribe admits a subscription to a sandbox the caller sees.
func (r *resources) subscribe(ctx context.Context, req *sdk.SubscribeRequest) error {
	key, ok := parseSandboxURI(req.Params.URI)
	r.mu.Lock()
	_, known := r.known[key]
	r.mu.Unlock()
	if !ok || !known {
		return sdk.ResourceNotFoundError(req.Params.URI)
	}
	return nil
}
