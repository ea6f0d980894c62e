package dashboard

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Page sizes of the table.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

// tableQuery is a parsed api/sandboxes request.
type tableQuery struct {
	search    string // lower case; matches inside namespace, name or "namespace/name"
	namespace string
	state     resolver.State // StateUnknown: any
	kind      string         // kindSandbox, kindWarm or "" for both
	labels    []labelReq     // every term must hold
	sort      sortKey
	desc      bool
	page      int // from 1
	size      int
}

// parseTableQuery reads the query string: q, label (a selector:
// parseLabelSelector), namespace, state, kind
// (sandbox, warm-pool-pod, all), sort (namespace, name, state,
// lastActivity), order (asc, desc), page (from 1) and size (1-200).
func parseTableQuery(v url.Values) (tableQuery, error) {
	q := tableQuery{kind: kindSandbox, page: 1, size: defaultPageSize}
	q.search = strings.ToLower(strings.TrimSpace(v.Get("q")))
	if len(q.search) > 253 {
		return q, fmt.Errorf("q is longer than 253 characters")
	}
	var err error
	if q.labels, err = parseLabelSelector(v.Get("label")); err != nil {
		return q, err
	}
	if ns := v.Get("namespace"); ns != "" {
		if !resolver.IsDNSLabel(ns) {
			return q, fmt.Errorf("namespace %q is not a namespace name", ns)
		}
		q.namespace = ns
	}
	if s := v.Get("state"); s != "" {
		st, ok := resolver.ParseState(s)
		if !ok || st == resolver.StateUnknown {
			return q, fmt.Errorf("state %q is not one of running, starting, suspending, suspended, finished", s)
		}
		q.state = st
	}
	switch k := v.Get("kind"); k {
	case "", kindSandbox:
	case kindWarm:
		q.kind = kindWarm
	case "all":
		q.kind = ""
	default:
		return q, fmt.Errorf("kind %q is not one of sandbox, warm-pool-pod, all", k)
	}
	if s := v.Get("sort"); s != "" {
		key, ok := sortNames[s]
		if !ok {
			return q, fmt.Errorf("sort %q is not one of namespace, name, state, lastActivity", s)
		}
		q.sort = key
	}
	switch o := v.Get("order"); o {
	case "", "asc":
	case "desc":
		q.desc = true
	default:
		return q, fmt.Errorf("order %q is not asc or desc", o)
	}
	if q.page, err = intParam(v, "page", 1, 1, 1<<20); err != nil {
		return q, err
	}
	if q.size, err = intParam(v, "size", defaultPageSize, 1, maxPageSize); err != nil {
		return q, err
	}
	return q, nil
}

func intParam(v url.Values, name string, def, lo, hi int) (int, error) {
	s := v.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo {
		return 0, fmt.Errorf("%s %q is not a whole number of at least %d", name, s, lo)
	}
	return min(n, hi), nil
}

// matches reports whether it passes every filter but the state one (the
// counts by state are over those, so the page can offer them).
func (q *tableQuery) matches(it *item) bool {
	switch {
	case q.kind == kindSandbox && it.warm, q.kind == kindWarm && !it.warm:
		return false
	case q.namespace != "" && it.res.Namespace != q.namespace:
		return false
	case len(q.labels) > 0 && !matchLabels(q.labels, it.meta.labelsOf()):
		return false
	case q.search == "":
		return true
	}
	if strings.Contains(it.res.Name, q.search) || strings.Contains(it.res.Namespace, q.search) {
		return true
	}
	// Across the slash of "namespace/name", without building the string.
	if i := strings.IndexByte(q.search, '/'); i >= 0 {
		return strings.HasSuffix(it.res.Namespace, q.search[:i]) && strings.HasPrefix(it.res.Name, q.search[i+1:])
	}
	return false
}

// tableAnswer is the JSON answer of api/sandboxes.
type tableAnswer struct {
	Generation uint64 `json:"generation"`
	// Total is the number of rows that match, over all pages.
	Total int `json:"total"`
	Page  int `json:"page"`
	Size  int `json:"size"`
	// Counts are the matches by state, ignoring the state filter.
	Counts map[string]int `json:"counts"`
	Rows   []Row          `json:"rows"`
}

// table answers q from v with one walk of a ready order. Without a search,
// the totals and counts come from the per-namespace counts, and the walk
// stops once the page is full: the first page costs about its own rows.
// A search must look at every item to count its matches.
func (v *view) table(q tableQuery, vis *visibility, rows *rowMaker, last lastActivityFunc) tableAnswer {
	order := v.order(q.sort, last, rows.now)
	if q.sort == sortNamespace && q.namespace != "" {
		order = v.namespaceRange(q.namespace)
	}
	var (
		counts    [numStates]int
		total     int
		aggregate = q.search == "" && len(q.labels) == 0
		page      = make([]*item, 0, q.size)
		first     = (q.page - 1) * q.size
		seen      int
		// The catalog order groups namespaces: remember the last answer.
		lastNS  string
		lastMay bool
	)
	if aggregate {
		counts = v.countsFor(q, vis)
		total = counts[q.state]
		if q.state == resolver.StateUnknown {
			for _, n := range counts {
				total += n
			}
		}
	}
	for i := range order {
		if aggregate && (len(page) == q.size || seen >= total) {
			break
		}
		it := order[i]
		if q.desc {
			it = order[len(order)-1-i]
		}
		if !q.matches(it) {
			continue
		}
		if !vis.all() {
			if ns := it.res.Namespace; ns != lastNS || lastNS == "" {
				lastNS, lastMay = ns, vis.may(ns)
			}
			if !lastMay {
				continue
			}
		}
		if !aggregate {
			counts[it.res.State]++
		}
		if q.state != resolver.StateUnknown && it.res.State != q.state {
			continue
		}
		if seen >= first && len(page) < q.size {
			page = append(page, it)
		}
		seen++
	}
	if !aggregate {
		total = seen
	}
	ans := tableAnswer{
		Generation: v.gen,
		Total:      total,
		Page:       q.page,
		Size:       q.size,
		Counts:     stateMap(&counts),
		Rows:       make([]Row, len(page)),
	}
	for i, it := range page {
		ans.Rows[i] = rows.row(it)
	}
	return ans
}

// countsFor sums the per-namespace counts of the kinds q lists over the
// namespaces it and the viewer allow.
func (v *view) countsFor(q tableQuery, vis *visibility) [numStates]int {
	var out [numStates]int
	add := func(ns string, c *stateCounts) {
		if c == nil || !vis.may(ns) {
			return
		}
		for s := range numStates {
			if q.kind != kindWarm {
				out[s] += c.sandboxes[s]
			}
			if q.kind != kindSandbox {
				out[s] += c.warm[s]
			}
		}
	}
	if q.namespace != "" {
		add(q.namespace, v.counts[q.namespace])
		return out
	}
	for ns, c := range v.counts {
		add(ns, c)
	}
	return out
}

// stateMap names the counts of every state a sandbox can be listed in, zeros
// included, so that the page shows every state.
func stateMap(c *[numStates]int) map[string]int {
	m := make(map[string]int, numStates-1)
	for s := resolver.StateRunning; int(s) < numStates; s++ {
		m[s.String()] = c[s]
	}
	return m
}

func (h *Handler) serveTable(w http.ResponseWriter, r *http.Request) {
	q, err := parseTableQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	v, vis, ok := h.begin(w, r)
	if !ok {
		return
	}
	now := h.now()
	writeJSON(w, http.StatusOK, v.table(q, vis, newRowMaker(h.sb, h.act, now), h.lastActivity))
}
