package dashboard

import (
	"sync"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// recentFor is how long a shared read of the activator or the extensions
// catalog serves: every open page gets a message at about the same time
// after a change, and one read serves them all.
const recentFor = 100 * time.Millisecond

// recent keeps the last result of read for recentFor. The result is
// shared: callers only read it.
type recent[T any] struct {
	read func() T
	now  func() time.Time

	mu  sync.Mutex
	at  time.Time
	val T
}

func (r *recent[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); r.at.IsZero() || now.Sub(r.at) >= recentFor || now.Before(r.at) {
		r.val, r.at = r.read(), now
	}
	return r.val
}

// reset makes the next get read afresh.
func (r *recent[T]) reset() {
	r.mu.Lock()
	r.at = time.Time{}
	r.mu.Unlock()
}

// sharedActivity is the activator's view with Held read once per
// recentFor for all pages (it takes the lock the hold path takes, and
// allocates a map). The optional methods are asked of the activator
// itself (Options.Activity), not of this wrapper.
type sharedActivity struct {
	Activity
	held recent[map[resolver.Key]int]
}

func newSharedActivity(a Activity) Activity {
	if a == nil {
		return nil
	}
	s := &sharedActivity{Activity: a}
	s.held = recent[map[resolver.Key]int]{read: a.Held, now: time.Now}
	return s
}

func (s *sharedActivity) Held() map[resolver.Key]int { return s.held.get() }
