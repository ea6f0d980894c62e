package dashboard

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
)

// countingViewer may list nothing and get nothing, and counts the
// per-name reviews it would cost (a SubjectAccessReview each, uncached).
type countingViewer struct{ gets atomic.Int64 }

func (v *countingViewer) MayList(context.Context, Resource, string) bool { return false }
func (v *countingViewer) MayGet(context.Context, string, string) bool {
	v.gets.Add(1)
	return false
}

// TestExistenceOracle: a viewer who may see nothing gets 404 for a
// sandbox that exists and for one that does not, but only the one that
// exists costs a review: the answer's latency tells which exist.
func TestExistenceOracle(t *testing.T) {
	fr := newFakeResolver()
	fr.set(running("alpha", "web-1", "u1", "10.0.0.1"))
	cv := &countingViewer{}
	h := start(t, Options{Sandboxes: fr, Viewer: func(*http.Request) (Viewer, error) { return cv, nil }})
	for _, p := range []string{"/api/sandboxes/alpha/web-1", "/api/sandboxes/alpha/nope"} {
		before := cv.gets.Load()
		if rec := get(t, h, p, nil); rec.Code != http.StatusNotFound {
			t.Fatalf("%s: %d", p, rec.Code)
		}
		if n := cv.gets.Load() - before; n != 1 {
			t.Errorf("%s: 404 after %d get reviews, want 1", p, n)
		}
	}
	if cv.gets.Load() != 2 {
		t.Fatalf("reviews asked: %d; the existing and the missing sandbox must cost the same", cv.gets.Load())
	}
}
