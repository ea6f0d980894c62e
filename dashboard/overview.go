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
	// Pools is the fill of the warm pools (SandboxWarmPools) visible.
	Pools poolFill `json:"pools"`
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

// maxShortPools bounds the warm pools the overview lists as short.
const maxShortPools = 10

// poolFill is the warm pools' fill: desired against ready, in all and for
// the pools furthest below their desired count.
type poolFill struct {
	// Watched is false without an extensions catalog.
	Watched bool `json:"watched"`
	Pools   int  `json:"pools"`
	// Desired, Ready and Unclaimed sum the pools' spec.replicas,
	// status.readyReplicas and status.replicas.
	Desired   int64 `json:"desired"`
	Ready     int64 `json:"ready"`
	Unclaimed int64 `json:"unclaimed"`
	// Short are the pools with the largest shortfall (desired - ready > 0),
	// at most maxShortPools, largest first.
	Short []warmPoolRow `json:"short"`
}

// poolFillOf sums the warm pools the viewer may list: a pass over pools,
// keeping only the bounded list of the shortest.
func poolFillOf(pools []WarmPool, watched bool, vis *visibility) poolFill {
	f := poolFill{Watched: watched, Short: []warmPoolRow{}}
	for i := range pools {
		p := &pools[i]
		if !vis.mayList(ResourceWarmPools, p.Namespace) {
			continue
		}
		f.Pools++
		f.Desired += int64(p.Desired)
		f.Ready += int64(p.Ready)
		f.Unclaimed += int64(p.Replicas)
		row := warmPoolRowOf(p)
		if row.Shortfall <= 0 {
			continue
		}
		// Insert in order (largest shortfall, then namespace and name as
		// the pools come), dropping the tail past the bound.
		at := len(f.Short)
		for at > 0 && f.Short[at-1].Shortfall < row.Shortfall {
			at--
		}
		if at < maxShortPools {
			f.Short = slices.Insert(f.Short, at, row)
			if len(f.Short) > maxShortPools {
				f.Short = f.Short[:maxShortPools]
			}
		}
	}
	return f
}

// overview is the generation's overview with the latest activity
// figures and the warm pools' fill: the answer of api/overview and part
// of every event message.
func (h *Handler) overview(v *view, vis *visibility) overview {
	o := v.overview(vis, h.act)
	if b := h.stats.busiest.Load(); b != nil {
		o.Busiest = b.visibleTo(vis)
	}
	// The last hour's figures are the whole replica's: only for viewers
	// who may list every namespace's sandboxes.
	if vis.clusterWide() {
		o.LastHour = h.stats.lastHour.Load()
	}
	var pools []WarmPool
	if h.ext != nil {
		pools = h.pools.get()
	}
	o.Pools = poolFillOf(pools, h.ext != nil, vis)
	return o
}

func (h *Handler) serveOverview(w http.ResponseWriter, r *http.Request) {
	v, vis, ok := h.begin(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, h.overview(v, vis))
}
