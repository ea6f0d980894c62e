package dashboard

import (
	"net/http"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// sandboxAnswer is the JSON answer of api/sandboxes/{namespace}/{name}.
type sandboxAnswer struct {
	Generation uint64 `json:"generation"`
	Sandbox    Row    `json:"sandbox"`
	// Lifecycle is what the sandbox's annotations say (the row has what is
	// in effect).
	Lifecycle *lifecycle `json:"lifecycle,omitempty"`
	// Curl is a request through the router, ready to paste.
	Curl string `json:"curl"`
}

type lifecycle struct {
	IdleTimeoutSeconds *int64    `json:"idleTimeoutSeconds,omitempty"`
	HoldTimeoutSeconds *int64    `json:"holdTimeoutSeconds,omitempty"`
	Release            string    `json:"release,omitempty"`
	LastActivity       time.Time `json:"lastActivity,omitzero"`
	Revision           string    `json:"revision,omitempty"`
}

func lifecycleOf(lc resolver.Lifecycle) *lifecycle {
	out := &lifecycle{Release: lc.Release.String(), LastActivity: lc.LastActivity, Revision: lc.Revision}
	if lc.IdleTimeoutSet {
		s := int64(lc.IdleTimeout / time.Second)
		out.IdleTimeoutSeconds = &s
	}
	if lc.HoldTimeoutSet {
		s := int64(lc.HoldTimeout / time.Second)
		out.HoldTimeoutSeconds = &s
	}
	return out
}

// curlExample is a request to the sandbox through the router. Namespace
// and name are DNS labels and the router URL was checked by New, so
// nothing here needs shell quoting beyond the quotes it has.
func curlExample(routerURL, namespace, name string) string {
	return "curl -H 'X-Sandbox-ID: " + name + "' -H 'X-Sandbox-Namespace: " + namespace + "' " + routerURL + "/"
}

func (h *Handler) serveSandbox(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if !resolver.IsDNSLabel(ns) || !resolver.IsDNSLabel(name) {
		writeError(w, http.StatusBadRequest, "bad_key", "namespace and name must be DNS labels")
		return
	}
	v, vis, ok := h.begin(w, r)
	if !ok {
		return
	}
	it := v.find(resolver.Key{Namespace: ns, Name: name})
	// A sandbox the viewer may neither list nor get answers like one that
	// does not exist: its existence is not the viewer's to learn.
	if it == nil || !vis.mayGet(ns, name) {
		writeError(w, http.StatusNotFound, "not_found", "no such sandbox")
		return
	}
	ans := sandboxAnswer{
		Generation: v.gen,
		Sandbox:    newRowMaker(h.sb, h.act, h.now()).row(it),
		Curl:       curlExample(h.routerURL, ns, name),
	}
	if lc, ok := h.sb.Lifecycle(resolver.Key{Namespace: ns, Name: name, UID: it.res.UID}); ok {
		ans.Lifecycle = lifecycleOf(lc)
	}
	writeJSON(w, http.StatusOK, ans)
}
