package mcp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// What a caller sees: exactly the sandboxes it may reach (the data
// plane's own access decision). Any other sandbox, existing or not, gets
// the same answer, so a tool never confirms that one exists.

// notVisible is the answer for a sandbox the caller cannot see, whether
// it exists or not.
func notVisible(key resolver.Key) error {
	return fmt.Errorf("no sandbox %s/%s that you may reach: check the name with list_sandboxes", key.Namespace, key.Name)
}

var errAccessUnavailable = errors.New("your access could not be checked now (the Kubernetes API did not answer): retry in a few seconds")

// reach checks that c may reach key, and that the router knows it.
func (h *Handler) reach(ctx context.Context, c *caller, key resolver.Key) error {
	ok, err := h.opts.Access.Reaches(ctx, c.principal, key)
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return errAccessUnavailable
	case !ok:
		return notVisible(key)
	}
	if !h.opts.Sandboxes.Synced() {
		return errors.New("the router is still loading the cluster's sandboxes: retry in a few seconds")
	}
	if h.opts.Sandboxes.Lookup(key).State == resolver.StateUnknown {
		return notVisible(key)
	}
	return nil
}

// sandboxInfo is what the tools and resources say of a sandbox.
type sandboxInfo struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	State     string `json:"state"`
	UID       string `json:"uid,omitempty"`
	URI       string `json:"uri"`
}

// infoOf describes the sandbox key as res found it (named by key, so a
// sandbox gone meanwhile is still named: state unknown).
func infoOf(key resolver.Key, res resolver.Result) sandboxInfo {
	return sandboxInfo{Namespace: key.Namespace, Name: key.Name, State: res.State.String(), UID: res.UID, URI: sandboxURI(key)}
}

// visible lists the sandboxes p may reach, in namespace (all when ""),
// sorted. Each namespace costs one cached review (a RoleBinding without
// resourceNames grants it whole); in one not granted whole each sandbox
// costs one more; at most budget reviews in all: past it the answer is
// cut (truncated).
func (h *Handler) visible(ctx context.Context, p access.Principal, namespace string, budget int) (out []resolver.Result, truncated bool, err error) {
	sb := h.opts.Sandboxes
	if key, ok := p.Sandbox(); ok { // a scoped token reaches one sandbox
		if namespace != "" && namespace != key.Namespace {
			return nil, false, nil
		}
		if res := sb.Lookup(key); res.State != resolver.StateUnknown {
			if ok, err := h.opts.Access.Reaches(ctx, p, key); err != nil || !ok {
				return nil, false, err
			}
			return []resolver.Result{res}, false, nil
		}
		return nil, false, nil
	}
	byNS := make(map[string][]resolver.Result)
	for _, res := range sb.Snapshot() {
		if namespace != "" && res.Namespace != namespace {
			continue
		}
		// An unclaimed warm-pool pod is listed by its pod's name and UID;
		// it is no sandbox of anyone's until claimed.
		if sb.Lookup(resolver.Key{Namespace: res.Namespace, Name: res.Name}).UID != res.UID {
			continue
		}
		byNS[res.Namespace] = append(byNS[res.Namespace], res)
	}
	namespaces := make([]string, 0, len(byNS))
	for ns, list := range byNS {
		namespaces = append(namespaces, ns)
		// By name, so that a listing cut by the budget is always the same
		// first part.
		slices.SortFunc(list, func(a, b resolver.Result) int { return cmp.Compare(a.Name, b.Name) })
	}
	slices.Sort(namespaces)
	for _, ns := range namespaces {
		if budget == 0 {
			truncated = true
			break
		}
		budget-- // a namespace's review counts too
		all, err := h.opts.Access.Reaches(ctx, p, resolver.Key{Namespace: ns})
		if err != nil {
			return nil, false, err
		}
		if all {
			out = append(out, byNS[ns]...)
			continue
		}
		for _, res := range byNS[ns] {
			if budget == 0 {
				truncated = true
				break
			}
			budget--
			ok, err := h.opts.Access.Reaches(ctx, p, resolver.Key{Namespace: ns, Name: res.Name})
			if err != nil {
				return nil, false, err
			}
			if ok {
				out = append(out, res)
			}
		}
	}
	slices.SortFunc(out, func(a, b resolver.Result) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out, truncated, nil
}

type listArgs struct {
	Namespace     string `json:"namespace,omitempty" jsonschema:"only this namespace (default: every namespace you may reach)"`
	State         string `json:"state,omitempty" jsonschema:"only sandboxes in this state: running, starting, suspending, suspended or finished"`
	LabelSelector string `json:"label_selector,omitempty" jsonschema:"a Kubernetes label selector (app=web,tier!=db); needs namespace and a Kubernetes token with list permission on sandboxes"`
}

// maxListed bounds the sandboxes one listing returns.
const maxListed = 1000

func (h *Handler) listSandboxes(ctx context.Context, c *caller, a *listArgs) (*sdk.CallToolResult, error) {
	if a.Namespace != "" && !resolver.IsDNSLabel(a.Namespace) {
		return nil, fmt.Errorf("namespace %q is not a Kubernetes namespace name", clip(a.Namespace))
	}
	var state resolver.State
	if a.State != "" {
		s, ok := resolver.ParseState(a.State)
		if !ok || s == resolver.StateUnknown {
			return nil, fmt.Errorf("state %q is not running, starting, suspending, suspended or finished", clip(a.State))
		}
		state = s
	}
	var labelled map[string]bool
	truncated := false
	if a.LabelSelector != "" {
		if err := checkSelector(a.LabelSelector); err != nil {
			return nil, err
		}
		if a.Namespace == "" {
			return nil, errors.New("label_selector needs a namespace")
		}
		if h.opts.Cluster == nil || !c.principal.Kubernetes() {
			return nil, errors.New("label_selector needs a Kubernetes token (the labels are read from the API server as you)")
		}
		names, err := h.opts.Cluster.ListNames(ctx, c.token, a.Namespace, a.LabelSelector, maxListed+1)
		if err != nil {
			return nil, clusterError("list sandboxes", resolver.Key{Namespace: a.Namespace}, err)
		}
		if len(names) > maxListed {
			truncated = true // the API server's first names only
		}
		labelled = make(map[string]bool, len(names))
		for _, n := range names {
			labelled[n] = true
		}
	}
	all, cut, err := h.visible(ctx, c.principal, a.Namespace, h.limits.Reviews)
	truncated = truncated || cut
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errAccessUnavailable
	}
	list := make([]sandboxInfo, 0, min(len(all), maxListed))
	for _, res := range all {
		if (state != resolver.StateUnknown && res.State != state) || (labelled != nil && !labelled[res.Name]) {
			continue
		}
		if len(list) == maxListed {
			truncated = true
			break
		}
		list = append(list, infoOf(resolver.Key{Namespace: res.Namespace, Name: res.Name}, res))
	}
	out := map[string]any{"sandboxes": list, "count": len(list)}
	if truncated {
		out["truncated"] = true
		out["note"] = "the list is cut: filter by namespace (and state or label_selector) to see the rest"
	}
	return jsonResult(out)
}

func (h *Handler) getSandbox(ctx context.Context, c *caller, a *sandboxRef) (*sdk.CallToolResult, error) {
	key, err := a.key()
	if err != nil {
		return nil, err
	}
	if err := h.reach(ctx, c, key); err != nil {
		return nil, err
	}
	return jsonResult(infoOf(key, h.opts.Sandboxes.Lookup(key)))
}
