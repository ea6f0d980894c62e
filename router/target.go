package router

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// upstreamTarget is where one attempt goes.
type upstreamTarget struct {
	addr     netip.AddrPort
	protocol resolver.Protocol
	// release frees the request's place under the activator's release
	// cap once the response head arrived; nil when it was not held.
	release func()
	// fresh: dial a new connection rather than take a pooled one.
	fresh bool
}

// headArrived is called once the attempt has its response head or failed.
func (t *upstreamTarget) headArrived() {
	if t.release != nil {
		t.release()
		t.release = nil
	}
}

var (
	errNotFound     = &httpError{status: http.StatusNotFound, code: CodeSandboxNotFound, detail: "sandbox not found"}
	errFinished     = &httpError{status: http.StatusGone, code: CodeSandboxFinished, detail: "sandbox has finished"}
	errNotReady     = &httpError{status: http.StatusServiceUnavailable, code: CodeNotReady, detail: "router is still loading sandboxes", retryAfter: 1}
	errSuspended    = &httpError{status: http.StatusServiceUnavailable, code: CodeSandboxSuspended, detail: "sandbox is suspended", retryAfter: 5}
	errStarting     = &httpError{status: http.StatusServiceUnavailable, code: CodeSandboxStarting, detail: "sandbox is starting", retryAfter: 1}
	errSuspending   = &httpError{status: http.StatusServiceUnavailable, code: CodeSandboxSuspending, detail: "sandbox is being suspended", retryAfter: 5}
	errForbiddenIP  = &httpError{status: http.StatusBadGateway, code: CodeUpstreamForbidden, detail: "sandbox endpoint is not an address the router dials"}
	errBodyTooLarge = &httpError{status: http.StatusRequestEntityTooLarge, code: CodeRequestTooLarge, detail: "request body too large"}
)

// target resolves the key to a dial address, through the activator when
// the sandbox is not running. It is re-run on every retry so that a pod
// recreated with a new IP is picked up at once.
func (rt *Router) target(ctx context.Context, key routingKey, rec *record) (upstreamTarget, error) {
	var t upstreamTarget
	direct := key.PodIP.IsValid() && rt.opts.PodIPMode == PodIPDirect && rt.inPodCIDRs(key.PodIP)
	res := rt.lookup(key.Key)
	if rt.opts.Activity != nil && rec.activity == nil && res.State != resolver.StateUnknown && res.State != resolver.StateFinished {
		// Only sandboxes the resolver knows are tracked: made-up names
		// must not grow the tracker. A held request is activity too.
		rec.activity = rt.opts.Activity.Begin(key.Key)
	}
	if res.State == resolver.StateUnknown && direct {
		t.addr = netip.AddrPortFrom(key.PodIP, key.Port)
		return t, nil
	}
	switch res.State {
	case resolver.StateRunning:
	case resolver.StateUnknown:
		if !rt.resolver.Synced() {
			return t, errNotReady
		}
		return t, errNotFound
	case resolver.StateFinished:
		return t, errFinished
	default: // starting, suspending, suspended
		if rt.opts.Activator == nil {
			switch res.State {
			case resolver.StateSuspended:
				return t, errSuspended
			case resolver.StateSuspending:
				return t, errSuspending
			}
			return t, errStarting
		}
		var err error
		if res, t.release, err = rt.opts.Activator.Activate(ctx, key.Key, key.Port, res); err != nil {
			return t, err
		}
	}
	t.protocol = res.ProtocolFor(key.Port)
	// The resolver's address wins over the client's hint: after a resume
	// or a pod replacement the hinted address may be another pod's.
	ip := res.PodIP
	if direct && !ip.IsValid() {
		ip = key.PodIP
	}
	if ip.IsLoopback() && !rt.opts.AllowLoopbackPodIP {
		// Whoever can write a pod's or a Sandbox's status must not make
		// the router dial its own host (the admin port, pprof).
		t.headArrived()
		return t, errForbiddenIP
	}
	t.addr = netip.AddrPortFrom(ip, key.Port)
	return t, nil
}

// lookup resolves a key. A UID pins the instance (a sandbox recreated
// under the same name has a new UID) and reaches unclaimed warm-pool pods,
// which have no sandbox name; it never redirects to another sandbox: the
// instance found must carry the name the client gave (the pod's name for a
// warm-pool pod), so a host or ID the client may use cannot be combined
// with someone else's UID.
func (rt *Router) lookup(k resolver.Key) resolver.Result {
	if k.UID == "" {
		return rt.resolver.Lookup(resolver.Key{Namespace: k.Namespace, Name: k.Name})
	}
	res := rt.resolver.Lookup(k)
	if res.State != resolver.StateUnknown {
		if res.Name != k.Name {
			return resolver.Result{}
		}
		return res
	}
	// A resolver that knows no UIDs (a static route without one) answers
	// by name alone.
	if byName := rt.resolver.Lookup(resolver.Key{Namespace: k.Namespace, Name: k.Name}); byName.UID == "" {
		return byName
	}
	return resolver.Result{}
}

// inPodCIDRs reports whether a client-supplied pod address is inside the
// pod network, so that direct mode cannot reach nodes, services or the
// router itself.
func (rt *Router) inPodCIDRs(a netip.Addr) bool {
	for _, p := range rt.opts.PodCIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
