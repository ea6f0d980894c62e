package kube

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unique"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// sandboxMeta is what views read of a Sandbox beyond routing (labels,
// conditions without their messages and times, the pod template's
// ports), packed into strings so that it can be interned: sandboxes made
// from one template share one copy, and a record pays 8 bytes for it.
// Fields are separated by unitSep, entries by recordSep; neither can
// occur in a label, a condition's type, status or reason, or a port's
// names (they are refused there).
type sandboxMeta struct {
	labels     string // key unitSep value, sorted by key
	conditions string // type unitSep status unitSep reason
	ports      string // container unitSep name unitSep number unitSep protocol
	cut        bool
}

const (
	unitSep   = "\x1f"
	recordSep = "\x1e"
)

// meta reads u's sandboxMeta, bounded as resolver.Details says.
func metaOf(u *unstructured.Unstructured) unique.Handle[sandboxMeta] {
	var m sandboxMeta
	var b strings.Builder
	// entry appends one entry; one with a separator in a field is left
	// out, a field over MaxDetailValue clipped.
	entry := func(fields ...string) {
		for _, f := range fields {
			if strings.ContainsAny(f, unitSep+recordSep) {
				m.cut = true
				return
			}
		}
		if b.Len() > 0 {
			b.WriteString(recordSep)
		}
		for i, f := range fields {
			if i > 0 {
				b.WriteString(unitSep)
			}
			if len(f) > resolver.MaxDetailValue {
				f, m.cut = f[:resolver.MaxDetailValue], true
			}
			b.WriteString(f)
		}
	}

	labels := u.GetLabels()
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) > resolver.MaxDetailLabels {
		keys, m.cut = keys[:resolver.MaxDetailLabels], true
	}
	for _, k := range keys {
		entry(k, labels[k])
	}
	m.labels = b.String()

	b.Reset()
	status, _ := u.Object["status"].(map[string]any)
	conds, _ := status["conditions"].([]any)
	for i, c := range conds {
		if i == resolver.MaxDetailConditions {
			m.cut = true
			break
		}
		if c, ok := c.(map[string]any); ok {
			entry(str(c["type"]), str(c["status"]), str(c["reason"]))
		}
	}
	m.conditions = b.String()

	b.Reset()
	n := 0
	spec, _ := u.Object["spec"].(map[string]any)
	tmpl, _ := spec["podTemplate"].(map[string]any)
	podSpec, _ := tmpl["spec"].(map[string]any)
	containers, _ := podSpec["containers"].([]any)
	for _, c := range containers {
		c, _ := c.(map[string]any)
		ports, _ := c["ports"].([]any)
		for _, p := range ports {
			p, _ := p.(map[string]any)
			num, ok := p["containerPort"].(int64)
			if !ok {
				if f, isFloat := p["containerPort"].(float64); isFloat {
					num, ok = int64(f), true
				}
			}
			if !ok || num < 1 || num > 65535 {
				continue
			}
			if n == resolver.MaxDetailPorts {
				m.cut = true
				break
			}
			n++
			entry(str(c["name"]), str(p["name"]), strconv.FormatInt(num, 10), str(p["protocol"]))
		}
	}
	m.ports = b.String()
	return unique.Make(m)
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// details unpacks the record's meta.
func (rec *sandboxRecord) details() resolver.Details {
	d := resolver.Details{}
	if rec.created != 0 {
		d.Created = time.Unix(rec.created, 0)
	}
	if rec.meta == (unique.Handle[sandboxMeta]{}) {
		return d
	}
	m := rec.meta.Value()
	d.Cut = m.cut
	for e := range entries(m.labels) {
		if len(e) == 2 {
			d.Labels = append(d.Labels, resolver.Label{Key: e[0], Value: e[1]})
		}
	}
	for e := range entries(m.conditions) {
		if len(e) == 3 {
			d.Conditions = append(d.Conditions, resolver.Condition{Type: e[0], Status: e[1], Reason: e[2]})
		}
	}
	for e := range entries(m.ports) {
		if len(e) == 4 {
			n, _ := strconv.ParseInt(e[2], 10, 32)
			d.Ports = append(d.Ports, resolver.Port{Container: e[0], Name: e[1], Number: int32(n), Protocol: e[3]})
		}
	}
	return d
}

// entries yields the fields of each entry of a packed string.
func entries(s string) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		if s == "" {
			return
		}
		for e := range strings.SplitSeq(s, recordSep) {
			if !yield(strings.Split(e, unitSep)) {
				return
			}
		}
	}
}

// Details returns what the sandbox k names says beyond routing (see
// resolver.Details), from the cache; false for a warm-pool pod and a
// sandbox not known or going away.
func (r *Resolver) Details(k resolver.Key) (resolver.Details, bool) {
	// Copy what is needed under the lock (Lookup takes it too) and
	// unpack after.
	r.idx.mu.RLock()
	e, sb := r.idx.current(k)
	if sb == nil {
		r.idx.mu.RUnlock()
		return resolver.Details{}, false
	}
	rec := sandboxRecord{created: sb.created, meta: sb.meta}
	pod := ""
	if p := e.servingPod(sb); p != nil {
		pod = p.name
	}
	r.idx.mu.RUnlock()
	d := rec.details()
	d.Pod = pod
	return d, true
}

// servingPod is the live pod of sb that serves it, or will: the ready one
// first, else the first live one.
func (e *entry) servingPod(sb *sandboxRecord) *podRecord {
	var live *podRecord
	for _, p := range e.pods {
		if p.ownerUID != sb.uid || !p.live() {
			continue
		}
		if p.ready {
			return p
		}
		if live == nil {
			live = p
		}
	}
	return live
}
