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

// resources keeps one caller's resource list.
type resources struct {
	h *Handler
	p access.Principal // as first authenticated: whose list it is

	mu     sync.Mutex
	server *sdk.Server
	known  map[resolver.Key]resolver.State
}

func newResources(h *Handler, p access.Principal) *resources {
	return &resources{h: h, p: p, known: make(map[resolver.Key]resolver.State)}
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

// refresh lists what the caller reaches now, and adds and removes
// accordingly.
func (r *resources) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	list, cut, err := r.h.visible(ctx, r.p, "", r.h.limits.Reviews)
	if err != nil {
		return // the next refresh or change tries again; nothing is removed on silence
	}
	if len(list) > r.h.limits.Resources {
		list = list[:r.h.limits.Resources]
	}
	now := make(map[resolver.Key]resolver.Result, len(list))
	for _, res := range list {
		now[resolver.Key{Namespace: res.Namespace, Name: res.Name}] = res
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var gone []string
	for k := range r.known {
		if cut {
			break // a cut list says nothing of what it left out: remove nothing
		}
		if _, ok := now[k]; !ok {
			gone = append(gone, sandboxURI(k))
			delete(r.known, k)
		}
	}
	if len(gone) > 0 {
		r.server.RemoveResources(gone...)
	}
	for k, res := range now {
		r.setLocked(ctx, k, res)
	}
}

// changed updates the sandboxes of keys the caller reaches.
func (r *resources) changed(ctx context.Context, keys []resolver.Key) {
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	for _, k := range keys {
		if k.UID != "" {
			continue // a warm-pool pod: nobody's sandbox
		}
		res := r.h.opts.Sandboxes.Lookup(k)
		reach := false
		if res.State != resolver.StateUnknown {
			ok, err := r.h.opts.Access.Reaches(ctx, r.p, k)
			if err != nil {
				continue
			}
			reach = ok
		}
		r.mu.Lock()
		_, had := r.known[k]
		switch {
		case reach && (had || len(r.known) < r.h.limits.Resources):
			r.setLocked(ctx, k, res)
		case !reach && had:
			delete(r.known, k)
			r.server.RemoveResources(sandboxURI(k))
		}
		r.mu.Unlock()
	}
}

// setLocked adds k's resource, or tells its subscribers it changed.
func (r *resources) setLocked(ctx context.Context, k resolver.Key, res resolver.Result) {
	old, had := r.known[k]
	if had && old == res.State {
		return
	}
	r.known[k] = res.State
	uri := sandboxURI(k)
	r.server.AddResource(&sdk.Resource{URI: uri, Name: k.Namespace + "/" + k.Name, MIMEType: "application/json",
		Description: "sandbox " + k.Namespace + "/" + k.Name + ": " + res.State.String()}, r.read)
	if had {
		_ = r.server.ResourceUpdated(ctx, &sdk.ResourceUpdatedNotificationParams{URI: uri})
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
