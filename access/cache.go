package access

import (
	"context"
	"crypto/sha256"
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
	entries     *lru.Cache[digest, memoEntry[V]]
	calls       singleflight.Group
	ttl         time.Duration
	negativeTTL time.Duration
	staleFor    time.Duration
	callTimeout time.Duration
	counts      memoCounters
	now         func() time.Time
}

// digest keys the memos: a SHA-256, so that neither a token nor an
// identity is kept in memory as such, and every key has one small size.
type digest [sha256.Size]byte

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
	entries, err := lru.New[digest, memoEntry[V]](o.size)
	if err != nil {
		panic(err) // only for a size below 1, which New never passes
	}
	return &memo[V]{name: o.name, entries: entries, ttl: o.ttl, negativeTTL: o.negativeTTL,
		staleFor: o.staleFor, callTimeout: o.callTimeout, counts: o.metrics.memoCounters(o.name), now: time.Now}
}

// call is the result of one ask, shared by the requests that waited on it.
type call[V any] struct {
	val V
	ok  bool
}

// cached answers key from memory, if it has a fresh answer.
func (m *memo[V]) cached(key digest) (val V, ok, hit bool) {
	e, found := m.entries.Get(key)
	if found && m.now().Before(e.expires) {
		m.counts.hit.Inc()
		return e.val, e.ok, true
	}
	return val, false, false
}

// fetch asks, once however many callers race for key, and remembers the
// answer. err is set only when there is no answer, fresh or stale, to
// give. It is cached's slow path, apart so that a hit allocates nothing.
func (m *memo[V]) fetch(ctx context.Context, key digest, ask func(context.Context) (V, bool, error)) (V, bool, error) {
	m.counts.miss.Inc()
	e, cached := m.entries.Get(key)
	ch := m.calls.DoChan(string(key[:]), func() (any, error) {
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
		if err != nil {
			m.counts.callErrors.Inc()
			return nil, err
		}
		m.counts.calls.Inc()
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
			m.counts.stale.Inc()
			return e.val, e.ok, nil
		}
		return zero, false, res.Err
	}
}
