package dashboard

import (
	"bufio"
	"context"
	"github.com/sandbox-router/sandbox-router/resolver"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
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

// getOnly may list nothing and get alpha/web-1 alone (a RoleBinding with
// resourceNames).
type getOnly struct{}

func (getOnly) MayList(context.Context, Resource, string) bool { return false }
func (getOnly) MayGet(_ context.Context, ns, name string) bool {
	return ns == "alpha" && name == "web-1"
}

// TestStreamFollowsAGettableSandbox: a one-sandbox page's stream names
// its sandbox, and a viewer who may get it (not list its namespace) gets
// its changes, and nothing of any other sandbox; a bad name is refused.
func TestStreamFollowsAGettableSandbox(t *testing.T) {
	fr := fixture()
	h := start(t, Options{Sandboxes: fr, Viewer: func(*http.Request) (Viewer, error) { return getOnly{}, nil }})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if res, err := http.Get(srv.URL + "/api/events?namespace=alpha&name=Bad_Name"); err != nil || res.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad name: %v %v", res, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/events?namespace=alpha&name=web-1", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", res, err)
	}
	defer res.Body.Close()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "data: ") && strings.Contains(l, `"rows":[{`) {
				lines <- l
			}
		}
	}()
	fr.set(inState(resolver.StateSuspended, "alpha", "web-2", "u-a2b")) // not followed: never sent
	fr.fire(key("alpha", "web-2"))
	fr.set(inState(resolver.StateSuspended, "alpha", "web-1", "u-a1"))
	fr.fire(key("alpha", "web-1"))
	select {
	case l := <-lines:
		if !strings.Contains(l, `"name":"web-1"`) || strings.Contains(l, "web-2") {
			t.Fatalf("update %s: want web-1's change only", l)
		}
	case <-time.After(time.Minute):
		t.Fatal("no update for the followed sandbox")
	}
}
