package router

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// sandboxErrors records what the router tells Options.ErrorEvents.
type sandboxErrors struct {
	mu   sync.Mutex
	seen []string
}

func (s *sandboxErrors) SandboxError(key resolver.Key, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, key.Namespace+"/"+key.Name+" "+http.StatusText(status)+" "+code)
}

func (s *sandboxErrors) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// TestErrorEvents: a known sandbox whose port refuses connections is
// answered 502 and reported once to ErrorEvents; a request it answers,
// and one refused before any sandbox was reached, are not reported.
func TestErrorEvents(t *testing.T) {
	errs := &sandboxErrors{}
	env := newProxyEnv(t, func(o *Options) { o.ErrorEvents = errs; o.DialRetries = 1 })
	client := env.client(viaH1)

	resp, err := client.Do(env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", freePort(t), nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if got := errs.all(); len(got) != 1 || got[0] != "default/sb1 Bad Gateway "+CodeUpstreamConnect {
		t.Fatalf("reported %q", got)
	}

	b, _ := startRecorder(t, false)
	resp, err = client.Do(env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", int(b.addrPort().Port()), nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, env.url(viaH1, "", "/"), nil)
	req.Header.Set(HeaderSandboxID, "Not_A_Label")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := errs.all(); len(got) != 1 {
		t.Fatalf("reported %q, want only the 502", got)
	}
}
