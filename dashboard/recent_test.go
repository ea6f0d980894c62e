package dashboard

import (
	"testing"
	"time"
)

// TestRecent: one read serves every caller for recentFor; reset and the
// end of that time read afresh.
func TestRecent(t *testing.T) {
	now := time.Unix(1000, 0)
	reads := 0
	r := recent[int]{read: func() int { reads++; return reads }, now: func() time.Time { return now }}
	if r.get() != 1 || r.get() != 1 {
		t.Fatal("a second read within recentFor")
	}
	now = now.Add(recentFor)
	if r.get() != 2 {
		t.Fatal("no read after recentFor")
	}
	r.reset()
	if r.get() != 3 {
		t.Fatal("no read after reset")
	}
}
