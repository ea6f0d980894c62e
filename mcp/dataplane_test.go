package mcp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// The in-process round trip into the router (dataplane.go), against real
// http.Handlers.

var dpKey = resolver.Key{Namespace: "team-a", Name: "sb1"}

func dpCaller() *caller {
	r := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/mcp", nil)
	r.RemoteAddr = "192.0.2.10:40000"
	return &caller{token: "tok-alice", request: r}
}

// TestDataPlaneRequest: the request the router gets names the sandbox
// with the X-Sandbox-* headers, on the runtime's port, carries the
// caller's credential and address, and its path byte for byte.
func TestDataPlaneRequest(t *testing.T) {
	got := make(chan *http.Request, 1)
	d := dataPlane{router: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			body, _ := io.ReadAll(r.Body)
			r.Header.Set("X-Test-Body", string(body))
		}
		got <- r
	})}
	resp, err := d.call(context.Background(), dpCaller(), dpKey, http.MethodPost, "/download/%2Ftmp%2Fa%20b", "text/plain", strings.NewReader("hi"), 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := recv(t, "the request", got)
	want := map[string]string{
		"Authorization": "Bearer tok-alice", "X-Sandbox-ID": "sb1", "X-Sandbox-Namespace": "team-a",
		"X-Sandbox-Port": "8888", "X-Sandbox-Timeout": "90", "Content-Type": "text/plain", "X-Test-Body": "hi",
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"X-Sandbox-Pod-IP", "X-Sandbox-UID"} {
		if _, ok := r.Header[k]; ok {
			t.Errorf("the request pins %s", k)
		}
	}
	if r.Host != internalHost || r.RequestURI != "/download/%2Ftmp%2Fa%20b" || r.URL.EscapedPath() != "/download/%2Ftmp%2Fa%20b" ||
		r.URL.Path != "/download//tmp/a b" || r.RemoteAddr != "192.0.2.10:40000" || r.Method != http.MethodPost {
		t.Errorf("request %s %s host %q path %q remote %q", r.Method, r.RequestURI, r.Host, r.URL.Path, r.RemoteAddr)
	}
	// A sub-second timeout is still a timeout the router takes.
	resp, err = d.call(context.Background(), dpCaller(), dpKey, http.MethodGet, "/list/a", "", nil, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r := recv(t, "the request", got); r.Header.Get("X-Sandbox-Timeout") != "1" || r.Header.Get("Content-Type") != "" {
		t.Errorf("timeout %q, content type %q", r.Header.Get("X-Sandbox-Timeout"), r.Header.Get("Content-Type"))
	}
}

// TestDataPlaneBodyNeverNil: the router is an http.Handler, whose
// contract says a server request's Body is never nil (http.NoBody when
// there is none); a GET without a body must not hand it nil (a handler
// or middleware that reads or closes it would panic, and the panic
// would be swallowed as an aborted response).
func TestDataPlaneBodyNeverNil(t *testing.T) {
	nilBody := make(chan bool, 1)
	d := dataPlane{router: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nilBody <- r.Body == nil
	})}
	resp, err := d.call(context.Background(), dpCaller(), dpKey, http.MethodGet, "/exists/a", "", nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if recv(t, "the request", nilBody) {
		t.Error("the in-process GET has a nil Body (want http.NoBody)")
	}
}

// TestDataPlaneStreams: the head is returned as soon as it is written,
// and the body streams: the reader gets the first write while the
// handler still waits to write the next.
func TestDataPlaneStreams(t *testing.T) {
	next := make(chan struct{})
	d := dataPlane{router: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Answer", "42")
		w.WriteHeader(http.StatusAccepted)
		w.Header().Set("X-Late", "after the head") // not part of the response
		w.Write([]byte("first;"))
		http.NewResponseController(w).Flush()
		<-next
		w.Write([]byte("second"))
	})}
	resp, err := d.roundTrip(httptest.NewRequest(http.MethodGet, "/stream", nil).WithContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Status != "202 Accepted" || resp.Header.Get("X-Answer") != "42" ||
		resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Late") != "" || resp.ContentLength != -1 {
		t.Fatalf("head %q %v", resp.Status, resp.Header)
	}
	buf := make([]byte, len("first;"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first;" {
		t.Fatalf("first read %q, %v", buf, err)
	}
	close(next)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

func TestDataPlaneEndings(t *testing.T) {
	cases := []struct {
		name     string
		handler  http.HandlerFunc
		status   int
		body     string
		abortErr bool // reading the body fails with errAborted
	}{
		{"never writes", func(w http.ResponseWriter, r *http.Request) {}, 200, "", false},
		{"status only", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }, 204, "", false},
		{"informational first", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte("made"))
		}, 201, "made", false},
		{"second WriteHeader ignored", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			w.WriteHeader(http.StatusOK)
			w.Write([]byte(`{"detail":"x","code":"sandbox_not_found"}`))
		}, 404, `{"detail":"x","code":"sandbox_not_found"}`, false},
		{"aborts mid-body", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("partial"))
			panic(http.ErrAbortHandler)
		}, 200, "partial", true},
		{"panics before writing", func(w http.ResponseWriter, r *http.Request) {
			panic(http.ErrAbortHandler)
		}, 502, "", true},
		{"panics with a bug before writing", func(w http.ResponseWriter, r *http.Request) {
			var m map[string]int
			m["x"]++
		}, 502, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := dataPlane{router: c.handler}
			resp, err := d.roundTrip(httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(context.Background()))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status || string(body) != c.body {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, c.status, c.body)
			}
			if c.abortErr != errors.Is(err, errAborted) || (!c.abortErr && err != nil) {
				t.Errorf("read error %v, want aborted=%v", err, c.abortErr)
			}
		})
	}
}

// TestDataPlaneReaderCloses: a reader that stops early (closes the body)
// ends the router's request: its context is cancelled, and its writes
// fail.
func TestDataPlaneReaderCloses(t *testing.T) {
	cancelled := make(chan struct{})
	writeErr := make(chan error, 1)
	d := dataPlane{router: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("chunk"))
		<-r.Context().Done()
		close(cancelled)
		_, err := w.Write([]byte("more"))
		writeErr <- err
	})}
	resp, err := d.roundTrip(httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	recv(t, "the handler's context to end", cancelled)
	if err := recv(t, "the handler's write", writeErr); err == nil {
		t.Error("a write after the reader left succeeded")
	}
}

// TestDataPlaneCallerGivesUp: a caller whose context ends before the
// head gets its context's error, and the router's request ends too.
func TestDataPlaneCallerGivesUp(t *testing.T) {
	started, ended := make(chan struct{}), make(chan struct{})
	d := dataPlane{router: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		close(ended)
	})}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := d.roundTrip(httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(ctx))
		errc <- err
	}()
	recv(t, "the handler to start", started)
	cancel()
	if err := recv(t, "roundTrip to return", errc); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
	recv(t, "the handler's context to end", ended)
}
