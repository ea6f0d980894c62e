package dashboard

import (
	"net/http"
	"strings"
	"time"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// sandboxAnswer is the JSON answer of api/sandboxes/{namespace}/{name}.
type sandboxAnswer struct {
	Generation uint64 `json:"generation"`
	Sandbox    Row    `json:"sandbox"`
	// Labels, Conditions and Ports are what the sandbox's object says
	// (only with SandboxDetails); DetailsCut that some were left out.
	Labels     map[string]string `json:"labels,omitempty"`
	Conditions []condition       `json:"conditions,omitempty"`
	Ports      []port            `json:"ports,omitempty"`
	DetailsCut bool              `json:"detailsCut,omitempty"`
	// Lifecycle is what the sandbox's annotations say (the row has what is
	// in effect).
	Lifecycle *lifecycle `json:"lifecycle,omitempty"`
	// Curl is a request through the router, ready to paste.
	Curl string `json:"curl"`
	// Examples are more commands to paste: through the host name (with
	// Options.BaseDomain) and minting a preview link. They hold
	// placeholders, never a credential.
	Examples []example `json:"examples"`
	// Events are the sandbox's recent events on this replica, newest
	// first (an Activity with EventLog only).
	Events []sandboxEvent `json:"events,omitempty"`
}

// example is a command and what it does.
type example struct {
	Title   string `json:"title"`
	Command string `json:"command"`
}

// sandboxEvent is one of a sandbox's recent events.
type sandboxEvent struct {
	At    time.Time `json:"at"`
	Kind  string    `json:"kind"`
	Text  string    `json:"text"`
	Count int       `json:"count"`
}

// maxSandboxEvents bounds the events one answer carries, whatever the
// EventLog visits.
const maxSandboxEvents = 64

// The log is kept by namespace and name: events before since (the
// sandbox's creation, when known) are a predecessor's of the same name,
// and left out.
func eventsOf(log EventLog, key resolver.Key, since time.Time) []sandboxEvent {
	out := []sandboxEvent{}
	log.VisitEvents(key, func(at time.Time, kind, text string, count int) {
		if len(out) < maxSandboxEvents && !at.Before(since) {
			out = append(out, sandboxEvent{At: at, Kind: kind, Text: text, Count: count})
		}
	})
	return out
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

// examples are the commands beside the plain curl: the host-name form
// when the router routes by host, and how to mint a preview link, with
// the caller's own Kubernetes token as a shell variable.
func examples(routerURL, baseDomain, namespace, name string) []example {
	var out []example
	if baseDomain != "" {
		scheme, hostPort, _ := strings.Cut(routerURL, "://")
		hostPort, _, _ = strings.Cut(hostPort, "/")
		port := ""
		if i := strings.LastIndexByte(hostPort, ':'); i >= 0 && !strings.HasSuffix(hostPort, "]") {
			port = hostPort[i:]
		}
		out = append(out, example{
			Title:   "Through its host name (port 8888; <port>-" + name + "." + namespace + "." + baseDomain + " for another)",
			Command: "curl " + scheme + "://" + name + "." + namespace + "." + baseDomain + port + "/",
		})
	}
	out = append(out, example{
		Title: "Mint a preview link (a token for this sandbox, 10 minutes; needs the router's minting endpoint and a caller allowed to reach the sandbox)",
		Command: "curl -s " + routerURL + access.MintPath + " -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' " +
			"-d '{\"namespace\":\"" + namespace + "\",\"name\":\"" + name + "\",\"ttl\":\"10m\"}'",
	})
	return out
}

// isDNSName reports whether s is dot-separated DNS labels.
func isDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !resolver.IsDNSLabel(l) {
			return false
		}
	}
	return true
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
	// A sandbox the viewer may neither list nor get answers like one that
	// does not exist: its existence is not the viewer's to learn. The
	// viewer is asked first, whether the sandbox exists or not, so that
	// the time of the answer does not tell either.
	may := vis.mayGet(ns, name)
	it := v.find(resolver.Key{Namespace: ns, Name: name})
	if it == nil || !may {
		writeError(w, http.StatusNotFound, "not_found", "no such sandbox")
		return
	}
	ans := sandboxAnswer{
		Generation: v.gen,
		Sandbox:    newRowMaker(h.sb, h.act, h.now()).row(it),
		Curl:       curlExample(h.routerURL, ns, name),
		Examples:   examples(h.routerURL, h.opts.BaseDomain, ns, name),
	}
	if log, ok := h.opts.Activity.(EventLog); ok {
		var since time.Time
		if it.meta != nil && !it.meta.created.IsZero() {
			since = it.meta.created.Add(-time.Second) // creation times are whole seconds
		}
		ans.Events = eventsOf(log, resolver.Key{Namespace: ns, Name: name}, since)
	}
	if lc, ok := h.sb.Lifecycle(resolver.Key{Namespace: ns, Name: name, UID: it.res.UID}); ok {
		ans.Lifecycle = lifecycleOf(lc)
	}
	if det, ok := h.sb.(SandboxDetails); ok {
		if d, ok := det.Details(resolver.Key{Namespace: ns, Name: name, UID: it.res.UID}); ok {
			ans.addDetails(d)
		}
	}
	writeJSON(w, http.StatusOK, ans)
}

type condition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

type port struct {
	Container string `json:"container,omitempty"`
	Name      string `json:"name,omitempty"`
	Number    int32  `json:"number"`
	Protocol  string `json:"protocol,omitempty"`
}

func (a *sandboxAnswer) addDetails(d resolver.Details) {
	a.DetailsCut = d.Cut
	if len(d.Labels) > 0 {
		a.Labels = make(map[string]string, len(d.Labels))
		for _, l := range d.Labels {
			a.Labels[l.Key] = l.Value
		}
	}
	for _, c := range d.Conditions {
		a.Conditions = append(a.Conditions, condition{Type: c.Type, Status: c.Status, Reason: c.Reason})
	}
	for _, p := range d.Ports {
		a.Ports = append(a.Ports, port{Container: p.Container, Name: p.Name, Number: p.Number, Protocol: p.Protocol})
	}
}
