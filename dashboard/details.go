package dashboard

import (
	"slices"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// itemMeta is what the catalog keeps of a sandbox's details: what the
// table shows and filters by. Conditions and ports are read when the
// one-sandbox view asks, not kept for every row.
type itemMeta struct {
	pod     string
	created time.Time
	labels  []resolver.Label // sorted by key
}

// metaOf reads the details of the sandbox k names; nil without
// SandboxDetails or when the resolver has none.
func (c *catalog) metaOf(k resolver.Key) *itemMeta {
	if c.det == nil {
		return nil
	}
	d, ok := c.det.Details(k)
	if !ok {
		return nil
	}
	return &itemMeta{pod: d.Pod, created: d.Created, labels: d.Labels}
}

func (m *itemMeta) equal(o *itemMeta) bool {
	if m == nil || o == nil {
		return m == o
	}
	return m.pod == o.pod && m.created.Equal(o.created) && slices.Equal(m.labels, o.labels)
}

func (m *itemMeta) labelsOf() []resolver.Label {
	if m == nil {
		return nil
	}
	return m.labels
}
