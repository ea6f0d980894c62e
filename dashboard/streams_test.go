package dashboard

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestStreamsAreBounded: past MaxStreams a page's event stream gets 503
// with Retry-After, and a place frees when a page leaves.
func TestStreamsAreBounded(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture(), MaxStreams: 2})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, cancel1 := dial(t, srv.URL, "")
	_, cancel2 := dial(t, srv.URL, "")
	defer cancel2()
	res, err := http.Get(srv.URL + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream: %d, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	cancel1()
	eventually(t, "a place freed", func() bool { return h.hub.size() < 2 })
	dial(t, srv.URL, "")
}

// revocableAuth signs in "good" until revoked.
type revocableAuth struct {
	mu      sync.Mutex
	revoked bool
}

func (a *revocableAuth) Viewer(context.Context, string, netip.Addr) (Viewer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.revoked {
		return nil, errUnknownToken
	}
	return namedViewer{ns: "alpha", user: "u"}, nil
}

// TestStreamEndsWhenTheTokenDoes: an open stream re-checks its token at
// each heartbeat and ends once the token is refused.
func TestStreamEndsWhenTheTokenDoes(t *testing.T) {
	auth := &revocableAuth{}
	h := start(t, Options{Sandboxes: fixture(), Auth: auth, Heartbeat: 20 * time.Millisecond})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer good")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", res, err)
	}
	ended := make(chan struct{})
	go func() { io.Copy(io.Discard, res.Body); res.Body.Close(); close(ended) }()
	auth.mu.Lock()
	auth.revoked = true
	auth.mu.Unlock()
	select {
	case <-ended:
	case <-time.After(time.Minute):
		t.Fatal("the stream outlived its token")
	}
}
