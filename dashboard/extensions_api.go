package dashboard

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// extQuery is a parsed api/warmpools, api/templates or api/claims request.
type extQuery struct {
	search    string // lower case; inside namespace, name or "namespace/name"
	namespace string // "": every namespace
	page      int    // from 1
	size      int
}

// parseExtQuery reads q, namespace, page (from 1) and size (1-200).
func parseExtQuery(v url.Values) (extQuery, error) {
	q := extQuery{search: strings.ToLower(strings.TrimSpace(v.Get("q")))}
	if len(q.search) > 253 {
		return q, fmt.Errorf("q is longer than 253 characters")
	}
	if ns := v.Get("namespace"); ns != "" {
		if !resolver.IsDNSLabel(ns) {
			return q, fmt.Errorf("namespace %q is not a namespace name", ns)
		}
		q.namespace = ns
	}
	var err error
	if q.page, err = intParam(v, "page", 1, 1, 1<<20); err != nil {
		return q, err
	}
	if q.size, err = intParam(v, "size", defaultPageSize, 1, maxPageSize); err != nil {
		return q, err
	}
	return q, nil
}

// matches is the name search of the sandboxes table, for a record.
func (q *extQuery) matches(namespace, name string) bool {
	if q.search == "" || strings.Contains(name, q.search) || strings.Contains(namespace, q.search) {
		return true
	}
	if i := strings.IndexByte(q.search, '/'); i >= 0 {
		return strings.HasSuffix(namespace, q.search[:i]) && strings.HasPrefix(name, q.search[i+1:])
	}
	return false
}

// kindAnswer is what a page says about how its kind is read: not
// watched at all, not served (no CRD), not synced yet, or failing (a 403
// without the RBAC of deploy/rbac/dashboard must not look like "none").
type kindAnswer struct {
	Kind     Kind   `json:"kind"`
	Resource string `json:"resource"`
	Version  string `json:"version,omitempty"`
	Served   bool   `json:"served"`
	Synced   bool   `json:"synced"`
	// Forbidden: the router's service account may not list the kind.
	Forbidden bool `json:"forbidden,omitempty"`
	// Error is the list/watch error, for a viewer who sees every
	// namespace; others get a summary (it may name a namespace).
	Error string `json:"error,omitempty"`
}

func kindAnswerOf(s KindStatus, vis *visibility) kindAnswer {
	a := kindAnswer{Kind: s.Kind, Resource: s.Resource, Version: s.Version, Served: s.Served(), Synced: s.Synced}
	if s.Error == "" {
		return a
	}
	a.Forbidden = strings.Contains(strings.ToLower(s.Error), "forbidden")
	switch {
	case vis.all():
		a.Error = s.Error
	case a.Forbidden:
		a.Error = "the router may not list " + s.Resource + " (RBAC)"
	default:
		a.Error = "the router cannot list " + s.Resource + " (see its log)"
	}
	return a
}

// kindsAnswer is the JSON answer of api/kinds.
type kindsAnswer struct {
	// Watched is false when the router does not read the extensions API
	// at all (no Options.Extensions).
	Watched bool         `json:"watched"`
	Kinds   []kindAnswer `json:"kinds"`
}

func (h *Handler) kinds(vis *visibility) kindsAnswer {
	a := kindsAnswer{Watched: h.ext != nil, Kinds: []kindAnswer{}}
	if h.ext == nil {
		return a
	}
	for _, s := range h.ext.Kinds() {
		a.Kinds = append(a.Kinds, kindAnswerOf(s, vis))
	}
	return a
}

func (h *Handler) serveKinds(w http.ResponseWriter, r *http.Request) {
	_, vis, ok := h.begin(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, h.kinds(vis))
}

// listAnswer is the JSON answer of the three list APIs.
type listAnswer[T any] struct {
	Watched bool `json:"watched"`
	// Kind is how the kind is read; absent when not Watched.
	Kind *kindAnswer `json:"kindStatus,omitempty"`
	// Total is the number of items that match, over all pages.
	Total int `json:"total"`
	Page  int `json:"page"`
	Size  int `json:"size"`
	Items []T `json:"items"`
}

// listPage filters records by the viewer and q and cuts out q's page,
// converting only the records on it.
func listPage[R, T any](h *Handler, kind Kind, res Resource, q extQuery, vis *visibility, all []R, nsName func(*R) (string, string), conv func(*R) T) listAnswer[T] {
	a := listAnswer[T]{Watched: h.ext != nil, Page: q.page, Size: q.size, Items: []T{}}
	if h.ext == nil {
		return a
	}
	for _, s := range h.ext.Kinds() {
		if s.Kind == kind {
			ka := kindAnswerOf(s, vis)
			a.Kind = &ka
		}
	}
	first := (q.page - 1) * q.size
	for i := range all {
		ns, name := nsName(&all[i])
		if !q.matches(ns, name) || !vis.mayList(res, ns) {
			continue
		}
		if a.Total >= first && len(a.Items) < q.size {
			a.Items = append(a.Items, conv(&all[i]))
		}
		a.Total++
	}
	return a
}

// begin for the list APIs: the query first, then who is asking.
func (h *Handler) beginList(w http.ResponseWriter, r *http.Request) (extQuery, *visibility, bool) {
	q, err := parseExtQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_query", err.Error())
		return q, nil, false
	}
	_, vis, ok := h.begin(w, r)
	return q, vis, ok
}

// warmPoolRow is a warm pool as api/warmpools answers it.
type warmPoolRow struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Template  string `json:"template"`
	Desired   int32  `json:"desired"`
	Ready     int32  `json:"ready"`
	// Unclaimed is the pool's status.replicas: the resolver's warm-pool
	// pods carry no pool name, so the pool's own count is the one shown.
	Unclaimed int32 `json:"unclaimed"`
	// Shortfall is how many ready sandboxes the pool lacks.
	Shortfall int32     `json:"shortfall"`
	Created   time.Time `json:"created"`
}

func warmPoolRowOf(p *WarmPool) warmPoolRow {
	return warmPoolRow{
		Namespace: p.Namespace, Name: p.Name, Template: p.Template,
		Desired: p.Desired, Ready: p.Ready, Unclaimed: p.Replicas,
		Shortfall: max(p.Desired-p.Ready, 0), Created: p.Created,
	}
}

func (h *Handler) serveWarmPools(w http.ResponseWriter, r *http.Request) {
	q, vis, ok := h.beginList(w, r)
	if !ok {
		return
	}
	var all []WarmPool
	if h.ext != nil {
		all = h.ext.WarmPools(q.namespace)
	}
	writeJSON(w, http.StatusOK, listPage(h, KindWarmPool, ResourceWarmPools, q, vis, all,
		func(p *WarmPool) (string, string) { return p.Namespace, p.Name }, warmPoolRowOf))
}

// templateRow is a template as api/templates answers it.
type templateRow struct {
	Namespace  string         `json:"namespace"`
	Name       string         `json:"name"`
	Containers []containerRow `json:"containers"`
	Created    time.Time      `json:"created"`
}

type containerRow struct {
	Name  string    `json:"name"`
	Image string    `json:"image"`
	Ports []portRow `json:"ports"`
}

type portRow struct {
	Name     string `json:"name,omitempty"`
	Number   int32  `json:"number"`
	Protocol string `json:"protocol"`
}

func templateRowOf(t *Template) templateRow {
	out := templateRow{Namespace: t.Namespace, Name: t.Name, Created: t.Created, Containers: make([]containerRow, len(t.Containers))}
	for i, c := range t.Containers {
		cr := containerRow{Name: c.Name, Image: c.Image, Ports: make([]portRow, len(c.Ports))}
		for j, p := range c.Ports {
			cr.Ports[j] = portRow{Name: p.Name, Number: p.Number, Protocol: p.Protocol}
		}
		out.Containers[i] = cr
	}
	return out
}

func (h *Handler) serveTemplates(w http.ResponseWriter, r *http.Request) {
	q, vis, ok := h.beginList(w, r)
	if !ok {
		return
	}
	var all []Template
	if h.ext != nil {
		all = h.ext.Templates(q.namespace)
	}
	writeJSON(w, http.StatusOK, listPage(h, KindTemplate, ResourceTemplates, q, vis, all,
		func(t *Template) (string, string) { return t.Namespace, t.Name }, templateRowOf))
}

// claimRow is a claim as api/claims answers it.
type claimRow struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	WarmPool  string `json:"warmPool,omitempty"`
	Template  string `json:"template,omitempty"`
	// Sandbox is the Sandbox made for the claim; SandboxState its state
	// in the resolver, when the viewer may see sandboxes there.
	Sandbox      string `json:"sandbox,omitempty"`
	SandboxState string `json:"sandboxState,omitempty"`
	// Phase is "deleting", "ready" or "pending"; Reason the Ready
	// condition's reason.
	Phase   string     `json:"phase"`
	Reason  string     `json:"reason,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
	Created time.Time  `json:"created"`
}

func (h *Handler) claimRowOf(vis *visibility) func(*Claim) claimRow {
	return func(c *Claim) claimRow {
		out := claimRow{
			Namespace: c.Namespace, Name: c.Name, WarmPool: c.WarmPool, Template: c.Template,
			Sandbox: c.Sandbox, Phase: "pending", Reason: c.Reason, Created: c.Created,
		}
		switch {
		case c.Deleting:
			out.Phase = "deleting"
		case c.Ready:
			out.Phase = "ready"
		}
		if !c.Expires.IsZero() {
			out.Expires = &c.Expires
		}
		if c.Sandbox != "" && vis.may(c.Namespace) {
			if res := h.sb.Lookup(resolver.Key{Namespace: c.Namespace, Name: c.Sandbox}); res.State != resolver.StateUnknown {
				out.SandboxState = res.State.String()
			}
		}
		return out
	}
}

func (h *Handler) serveClaims(w http.ResponseWriter, r *http.Request) {
	q, vis, ok := h.beginList(w, r)
	if !ok {
		return
	}
	var all []Claim
	if h.ext != nil {
		all = h.ext.Claims(q.namespace)
	}
	writeJSON(w, http.StatusOK, listPage(h, KindClaim, ResourceClaims, q, vis, all,
		func(c *Claim) (string, string) { return c.Namespace, c.Name }, h.claimRowOf(vis)))
}
