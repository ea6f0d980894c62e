package access

import (
	"math"
	"net/netip"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Limits bound what one caller, one client address or one sandbox may
// take. A zero rate or count turns that limit off; every table is an LRU
// of TableSize entries, so a flood of new identities or addresses evicts
// the stalest buckets rather than growing memory.
type Limits struct {
	// PerIdentity limits the requests of one identity (the user a token
	// names; the client address when there is none), Burst at once.
	PerIdentity      rate.Limit
	PerIdentityBurst int
	// PerSandbox limits the requests to one sandbox, whoever sends them.
	PerSandbox      rate.Limit
	PerSandboxBurst int
	// ConcurrentPerSandbox caps the requests in progress to one sandbox
	// (streams and WebSockets included, for their whole life).
	ConcurrentPerSandbox int
	// FailedAuthPerClient limits the refused credentials (401
	// invalid_credentials, not a missing one) of one client address: past
	// it, the address gets 429 before any review, so guessing tokens is
	// slow and cannot flood the API server.
	FailedAuthPerClient      rate.Limit
	FailedAuthPerClientBurst int
	// TableSize bounds each table (default 100000).
	TableSize int
}

func (l Limits) any() bool {
	return l.PerIdentity > 0 || l.PerSandbox > 0 || l.ConcurrentPerSandbox > 0 || l.FailedAuthPerClient > 0
}

// limiter enforces Limits.
type limiter struct {
	limits     Limits
	identities *lru.Cache[string, *rate.Limiter]
	sandboxes  *lru.Cache[resolver.Key, *rate.Limiter]
	clients    *lru.Cache[netip.Addr, *rate.Limiter] // anonymous callers, by address
	failures   *lru.Cache[netip.Addr, *rate.Limiter]
	metrics    *Metrics

	mu       sync.Mutex
	inFlight map[resolver.Key]int // only sandboxes with requests in progress
}

func newLimiter(l Limits, m *Metrics) *limiter {
	if !l.any() {
		return nil
	}
	if l.TableSize <= 0 {
		l.TableSize = 100000
	}
	lim := &limiter{limits: l, metrics: m, inFlight: map[resolver.Key]int{}}
	lim.identities, _ = lru.New[string, *rate.Limiter](l.TableSize)
	lim.sandboxes, _ = lru.New[resolver.Key, *rate.Limiter](l.TableSize)
	lim.clients, _ = lru.New[netip.Addr, *rate.Limiter](l.TableSize)
	lim.failures, _ = lru.New[netip.Addr, *rate.Limiter](l.TableSize)
	return lim
}

// bucket returns key's limiter in table, made on first use. Two racing
// first uses may each make one; one of them is kept, which at worst
// forgives a burst once.
func bucket[K comparable](table *lru.Cache[K, *rate.Limiter], key K, r rate.Limit, burst int) *rate.Limiter {
	if b, ok := table.Get(key); ok {
		return b
	}
	b := rate.NewLimiter(r, max(burst, 1))
	if prev, ok, _ := table.PeekOrAdd(key, b); ok {
		return prev
	}
	return b
}

// retryAfter is how many whole seconds until b has a token again.
func retryAfter(b *rate.Limiter) int {
	missing := 1 - b.Tokens()
	if missing <= 0 || b.Limit() <= 0 {
		return 1
	}
	return max(1, int(math.Ceil(missing/float64(b.Limit()))))
}

// blocked reports whether client has used up its failed authentications.
func (l *limiter) blocked(client netip.Addr) *Error {
	if l.limits.FailedAuthPerClient <= 0 || !client.IsValid() {
		return nil
	}
	b, ok := l.failures.Get(client)
	if !ok || b.Tokens() >= 1 {
		return nil
	}
	l.metrics.limited("failed_auth")
	return limitError(CodeTooManyFailures, "too many refused credentials from this address", retryAfter(b))
}

// failed counts a refused credential of client.
func (l *limiter) failed(client netip.Addr) {
	if l.limits.FailedAuthPerClient <= 0 || !client.IsValid() {
		return
	}
	bucket(l.failures, client, l.limits.FailedAuthPerClient, l.limits.FailedAuthPerClientBurst).Allow()
}

// admit takes a request of identity (or client, when anonymous) to
// sandbox: it returns the release of its concurrency slot, or the 429.
func (l *limiter) admit(identity string, client netip.Addr, sandbox resolver.Key) (func(), *Error) {
	if l.limits.PerIdentity > 0 {
		var b *rate.Limiter
		if identity != "" {
			b = bucket(l.identities, identity, l.limits.PerIdentity, l.limits.PerIdentityBurst)
		} else if client.IsValid() {
			b = bucket(l.clients, client, l.limits.PerIdentity, l.limits.PerIdentityBurst)
		}
		if b != nil && !b.Allow() {
			l.metrics.limited("identity")
			return nil, limitError(CodeRateLimited, "too many requests from this caller", retryAfter(b))
		}
	}
	key := resolver.Key{Namespace: sandbox.Namespace, Name: sandbox.Name}
	if l.limits.PerSandbox > 0 {
		b := bucket(l.sandboxes, key, l.limits.PerSandbox, l.limits.PerSandboxBurst)
		if !b.Allow() {
			l.metrics.limited("sandbox")
			return nil, limitError(CodeRateLimited, "too many requests to this sandbox", retryAfter(b))
		}
	}
	if l.limits.ConcurrentPerSandbox <= 0 {
		return noRelease, nil
	}
	l.mu.Lock()
	if l.inFlight[key] >= l.limits.ConcurrentPerSandbox {
		l.mu.Unlock()
		l.metrics.limited("concurrency")
		return nil, limitError(CodeSandboxBusy, "too many requests in progress to this sandbox", 1)
	}
	l.inFlight[key]++
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			if l.inFlight[key]--; l.inFlight[key] <= 0 {
				delete(l.inFlight, key)
			}
			l.mu.Unlock()
		})
	}, nil
}

func noRelease() {}

func limitError(code, detail string, retry int) *Error {
	return &Error{Status: 429, Code: code, Detail: detail, RetryAfter: retry}
}
