package dashboard

import (
	"cmp"
	"net/http"
	"slices"
	"strings"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// maxWaking bounds the sandboxes the overview lists as being woken.
const maxWaking = 10

// overview is the JSON answer of api/overview, and part of every event
// message.
type overview struct {
	Generation uint64 `json:"generation"`
	// Sandboxes counts the sandboxes (not warm-pool pods) visible.
	Sandboxes int            `json:"sandboxes"`
	States    map[string]int `json:"states"`
	WarmPool  warmPool       `json:"warmPool"`
	// Namespaces counts the namespaces with anything visible.
	Namespaces int `json:"namespaces"`
	// HeldRequests and Waking are this replica's (Activity only).
	HeldRequests *int     `json:"heldRequests,omitempty"`
	Waking       []waking `json:"waking,omitempty"`
	// Busiest are this replica's busiest sandboxes the viewer may see
	// (an Activity with RequestCounts only).
	Busiest *busiest `json:"busiest,omitempty"`
	// LastHour is this replica's last hour (Options.Metrics only).
	LastHour *lastHour `json:"lastHour,omitempty"`
}

// warmPool counts unclaimed warm-pool pods: Ready of them can take a
// claim now.
type warmPool struct {
	Pods  int `json:"pods"`
	Ready int `json:"ready"`
}

// waking is a sandbox with requests held while it resumes.
type waking struct {
	Namespace    string `json:"namespace"`
	Name         string `json:"name"`
	HeldRequests int    `json:"heldRequests"`
}

// overview sums the per-namespace counts the viewer may see: a pass over
// namespaces, not sandboxes.
func (v *view) overview(vis *visibility, act Activity) overview {
	var sb, warm [numStates]int
	o := overview{Generation: v.gen}
	for ns, c := range v.counts {
		if !vis.may(ns) {
			continue
		}
		o.Namespaces++
		for s := range numStates {
			sb[s] += c.sandboxes[s]
			warm[s] += c.warm[s]
		}
	}
	for s := range numStates {
		o.Sandboxes += sb[s]
		o.WarmPool.Pods += warm[s]
	}
	o.WarmPool.Ready = warm[resolver.StateRunning]
	o.States = stateMap(&sb)
	if act == nil {
		return o
	}
	total := 0
	for k, n := range act.Held() {
		if n <= 0 || !vis.may(k.Namespace) {
			continue
		}
		total += n
		o.Waking = append(o.Waking, waking{Namespace: k.Namespace, Name: k.Name, HeldRequests: n})
	}
	slices.SortFunc(o.Waking, func(a, b waking) int {
		if c := cmp.Compare(b.HeldRequests, a.HeldRequests); c != 0 {
			return c
		}
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if len(o.Waking) > maxWaking {
		o.Waking = o.Waking[:maxWaking]
	}
	o.HeldRequests = &total
	return o
}

// overview is the generation's overview with the latest activity
// figures: the answer of api/overview and part of every event message.
func (h *Handler) overview(v *view, vis *visibility) overview {
	o := v.overview(vis, h.act)
	if b := h.stats.busiest.Load(); b != nil {
		o.Busiest = b.visibleTo(vis)
	}
	o.LastHour = h.stats.lastHour.Load()
	return o
}

func (h *Handler) serveOverview(w http.ResponseWriter, r *http.Request) {
	v, vis, ok := h.begin(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, h.overview(v, vis))
}
