package access

import (
	"context"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// memo remembers the answers of one kind of question (who is this token;
// may this identity reach that sandbox) in a bounded LRU: a yes for ttl, a
// no for negativeTTL. However many requests race for a key, one call asks.
// When the authority cannot answer, an answer past its time to live keeps
// serving for staleFor, so that a short API server outage does not turn
// every known caller away.
type memo[V any] struct {
	name        string
	entries     *lru.Cache[string, memoEntry[V]]
	calls       singleflight.Group
	ttl         time.Duration
	negativeTTL time.Duration
	staleFor    time.Duration
	callTimeout time.Duration
	metrics     *Metrics
	now         func() time.Time
}

type memoEntry[V any] struct {
	val     V
	ok      bool
	expires time.Time
}

type memoOptions struct {
	name                  string
	size                  int
	ttl, negativeTTL      time.Duration
	staleFor, callTimeout time.Duration
	metrics               *Metrics
}

func newMemo[V any](o memoOptions) *memo[V] {
	entries, err := lru.New[string, memoEntry[V]](o.size)
	if err != nil {
		panic(err) // only for a size below 1, which New never passes
	}
	return &memo[V]{name: o.name, entries: entries, ttl: o.ttl, negativeTTL: o.negativeTTL,
		staleFor: o.staleFor, callTimeout: o.callTimeout, metrics: o.metrics, now: time.Now}
}

// call is the result of one ask, shared by the requests that waited on it.
type call[V any] struct {
	val V
	ok  bool
}

// get answers key from memory, or asks once. err is set only when there
// is no answer, fresh or stale, to give.
func (m *memo[V]) get(ctx context.Context, key string, ask func(context.Context) (V, bool, error)) (V, bool, error) {
	now := m.now()
	e, cached := m.entries.Get(key)
	if cached && now.Before(e.expires) {
		m.metrics.cache(m.name, "hit")
		return e.val, e.ok, nil
	}
	m.metrics.cache(m.name, "miss")
	ch := m.calls.DoChan(key, func() (any, error) {
		// A caller that missed just before another's call stored its
		// answer finds it here instead of asking again.
		if e, ok := m.entries.Get(key); ok && m.now().Before(e.expires) {
			return call[V]{e.val, e.ok}, nil
		}
		// Not the first caller's context: it may leave while others
		// wait on the same answer.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.callTimeout)
		defer cancel()
		v, ok, err := ask(cctx)
		m.metrics.called(m.name, err)
		if err != nil {
			return nil, err
		}
		ttl := m.ttl
		if !ok {
			ttl = m.negativeTTL
		}
		m.entries.Add(key, memoEntry[V]{val: v, ok: ok, expires: m.now().Add(ttl)})
		return call[V]{v, ok}, nil
	})
	var zero V
	select {
	case <-ctx.Done():
		return zero, false, ctx.Err()
	case res := <-ch:
		if res.Err == nil {
			c := res.Val.(call[V])
			return c.val, c.ok, nil
		}
		if cached && m.now().Before(e.expires.Add(m.staleFor)) {
			m.metrics.cache(m.name, "stale")
			return e.val, e.ok, nil
		}
		return zero, false, res.Err
	}
}
