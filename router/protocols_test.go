package router

// End-to-end tests of the protocols on both sides of the router: HTTP/1.1
// keep-alive, h2 over TLS, h2c in and out, trailers, streaming (SSE and
// chunked bodies of unknown length) and large bodies.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// upstreams are the sandbox protocols each matrix test runs against.
var upstreams = []struct {
	name  string
	proto resolver.Protocol
	h2c   bool
}{
	{"http1", resolver.ProtocolAuto, false},
	{"h2c", resolver.ProtocolH2C, true},
}

// TestHTTP1KeepAliveReuse: sequential requests, with and without bodies,
// share one upstream connection, and every answer is the sandbox's own.
// (This once failed now and then: when the sandbox answered before the
// body sender had reported, the connection was dropped and the client's
// connection poisoned, so that a later request got an empty 200.)
func TestHTTP1KeepAliveReuse(t *testing.T) {
	env := newProxyEnv(t, nil)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	}), false)
	client := env.client(viaH1)
	const n = 150
	for i := range n {
		method, body := http.MethodGet, ""
		var rd io.Reader
		switch i % 3 {
		case 1:
			method, body = http.MethodPost, "payload-"+strconv.Itoa(i)
			rd = strings.NewReader(body)
		case 2:
			method, body = http.MethodPut, "chunked-"+strconv.Itoa(i)
			rd = io.MultiReader(strings.NewReader(body)) // unknown length: chunked
		}
		res := doRequest(client, env.sandboxRequest(context.Background(), viaH1, method, "/r"+strconv.Itoa(i), be.port, rd))
		want := fmt.Sprintf("%s /r%d %s", method, i, body)
		if res.err != nil || res.status != 200 || res.body != want {
			t.Fatalf("request %d: %d %q %v %v, want %q", i, res.status, res.body, res.err, res.header, want)
		}
	}
	if got := be.newConns.Load(); got != 1 {
		t.Errorf("%d sequential requests used %d upstream connections, want 1", n, got)
	}
}

// TestClientConnSurvivesUpstreamClose: the sandbox answers each POST with
// Connection: close, so the router drops that upstream connection; the
// client's own keep-alive connection must stay healthy for its next
// request.
func TestClientConnSurvivesUpstreamClose(t *testing.T) {
	env := newProxyEnv(t, nil)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost {
			w.Header().Set("Connection", "close")
		}
		fmt.Fprintf(w, "%s %s", r.Method, b)
	}), false)
	client := env.client(viaH1)
	const n = 100
	for i := range n {
		body := "post-" + strconv.Itoa(i)
		res := doRequest(client, env.sandboxRequest(context.Background(), viaH1, http.MethodPost, "/", be.port, strings.NewReader(body)))
		if res.err != nil || res.body != "POST "+body {
			t.Fatalf("POST %d: %d %q %v", i, res.status, res.body, res.err)
		}
		res = doRequest(client, env.sandboxRequest(context.Background(), viaH1, http.MethodGet, "/", be.port, nil))
		if res.err != nil || res.body != "GET " {
			t.Fatalf("GET after POST %d: %d %q %v %v", i, res.status, res.body, res.err, res.header)
		}
	}
	if got := be.newConns.Load(); got != n+1 {
		t.Errorf("sandbox saw %d connections, want %d (one per closed POST, plus one)", got, n+1)
	}
}

// TestProtocolMatrix: every client protocol against every sandbox
// protocol: the sandbox sees the protocol the resolver asked for, the
// client the one it speaks, and bodies, status and trailers pass intact.
func TestProtocolMatrix(t *testing.T) {
	for _, up := range upstreams {
		for _, proto := range []string{viaH1, viaH2C, viaH2} {
			t.Run(proto+" to "+up.name, func(t *testing.T) {
				env := newProxyEnv(t, nil)
				env.res.set("default", "sb1", resolver.StateRunning, up.proto)
				seen := make(chan string, 1)
				be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					seen <- r.Proto + " " + r.Header.Get("X-Forwarded-Proto")
					b, _ := io.ReadAll(r.Body)
					w.Header().Set("Trailer", "X-Body-Length")
					w.Header().Set("X-Echo-Method", r.Method)
					w.WriteHeader(http.StatusCreated)
					w.Write(b)
					w.Header().Set("X-Body-Length", strconv.Itoa(len(b)))
				}), up.h2c)
				client := env.client(proto)
				for i := range 3 { // several on one client connection
					body := strings.Repeat("x", 1000*i+1)
					res := doRequest(client, env.sandboxRequest(context.Background(), proto, http.MethodPost, "/m", be.port, strings.NewReader(body)))
					if res.err != nil || res.status != http.StatusCreated || res.body != body || res.header.Get("X-Echo-Method") != "POST" {
						t.Fatalf("got %d %q %v %v", res.status, res.body, res.err, res.header)
					}
					wantProto := map[string]string{viaH1: "HTTP/1.1", viaH2C: "HTTP/2.0", viaH2: "HTTP/2.0"}[proto]
					if res.proto != wantProto {
						t.Errorf("client spoke %s, want %s", res.proto, wantProto)
					}
					if got := res.trailer.Get("X-Body-Length"); got != strconv.Itoa(len(body)) {
						t.Errorf("trailer X-Body-Length = %q, want %d (trailers %v)", got, len(body), res.trailer)
					}
					wantUp := "HTTP/1.1"
					if up.h2c {
						wantUp = "HTTP/2.0"
					}
					wantXFP := "http"
					if proto == viaH2 {
						wantXFP = "https"
					}
					if got := recv(t, seen, "request at the backend"); got != wantUp+" "+wantXFP {
						t.Errorf("sandbox saw %q, want %q", got, wantUp+" "+wantXFP)
					}
				}
				wantLabel := map[string]string{viaH1: "http1", viaH2C: "h2c", viaH2: "h2"}[proto]
				if got := env.metric("sandbox_router_requests_total", map[string]string{"protocol": wantLabel, "code": "201"}); got != 3 {
					t.Errorf("requests_total{protocol=%s,code=201} = %v, want 3", wantLabel, got)
				}
			})
		}
	}
}

// TestServerSentEventsLockStep: the sandbox sends event N and waits for
// the test to confirm the client has it before sending N+1. A router that
// buffered the stream would deadlock (and fail on the wait deadline).
func TestServerSentEventsLockStep(t *testing.T) {
	kinds := []struct {
		name        string
		contentType string
	}{
		{"sse", "text/event-stream"},
		// Not a streaming type: only the unknown length makes it a stream.
		{"chunked unknown length", "application/x-ndjson"},
	}
	for _, up := range upstreams {
		for _, kind := range kinds {
			for _, proto := range []string{viaH1, viaH2C, viaH2} {
				t.Run(fmt.Sprintf("%s %s to %s", kind.name, proto, up.name), func(t *testing.T) {
					env := newProxyEnv(t, nil)
					env.res.set("default", "sb1", resolver.StateRunning, up.proto)
					const events = 5
					next := make(chan struct{})
					finished := make(chan error, 1)
					be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						w.Header().Set("Content-Type", kind.contentType)
						w.Header().Set("Cache-Control", "no-cache")
						rc := http.NewResponseController(w)
						for i := range events {
							if _, err := fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i); err != nil {
								finished <- err
								return
							}
							if err := rc.Flush(); err != nil {
								finished <- err
								return
							}
							select {
							case <-next:
							case <-r.Context().Done():
								finished <- fmt.Errorf("event %d: %w", i, r.Context().Err())
								return
							}
						}
						finished <- nil
					}), up.h2c)

					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					resp, err := env.client(proto).Do(env.sandboxRequest(ctx, proto, http.MethodGet, "/events", be.port, nil))
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != kind.contentType {
						t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
					}
					lines := make(chan string)
					go func() {
						defer close(lines)
						sc := bufio.NewScanner(resp.Body)
						for sc.Scan() {
							lines <- sc.Text()
						}
					}()
					for i := range events {
						want := []string{fmt.Sprintf("id: %d", i), fmt.Sprintf("data: event %d", i), ""}
						for _, w := range want {
							if got := recv(t, lines, fmt.Sprintf("event %d before the sandbox may send the next", i)); got != w {
								t.Fatalf("event %d: line %q, want %q", i, got, w)
							}
						}
						next <- struct{}{} // only now may the sandbox send event i+1
					}
					if err := recv(t, finished, "the sandbox to finish"); err != nil {
						t.Fatal(err)
					}
					if _, ok := <-lines; ok {
						t.Fatal("data after the last event")
					}
				})
			}
		}
	}
}

// TestStreamingRequestBodyLockStep: a request body of unknown length is
// forwarded piece by piece while the response streams back (full duplex):
// the sandbox echoes each line as it arrives and the client sends the next
// line only after it got the echo of the previous one.
func TestStreamingRequestBodyLockStep(t *testing.T) {
	for _, up := range upstreams {
		for _, proto := range []string{viaH1, viaH2C, viaH2} {
			t.Run(proto+" to "+up.name, func(t *testing.T) {
				env := newProxyEnv(t, nil)
				env.res.set("default", "sb1", resolver.StateRunning, up.proto)
				be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					rc := http.NewResponseController(w)
					rc.EnableFullDuplex()
					w.WriteHeader(200)
					rc.Flush()
					sc := bufio.NewScanner(r.Body)
					for sc.Scan() {
						fmt.Fprintf(w, "echo %s\n", sc.Text())
						rc.Flush()
					}
				}), up.h2c)

				pr, pw := io.Pipe()
				defer pw.Close()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				resp, err := env.client(proto).Do(env.sandboxRequest(ctx, proto, http.MethodPost, "/duplex", be.port, pr))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				lines := make(chan string)
				go func() {
					defer close(lines)
					sc := bufio.NewScanner(resp.Body)
					for sc.Scan() {
						lines <- sc.Text()
					}
				}()
				for i := range 5 {
					msg := fmt.Sprintf("line %d", i)
					writeErr := make(chan error, 1)
					go func() { _, err := io.WriteString(pw, msg+"\n"); writeErr <- err }()
					if got := recv(t, lines, "echo of "+msg); got != "echo "+msg {
						t.Fatalf("got %q, want echo %s", got, msg)
					}
					if err := recv(t, writeErr, "write of "+msg); err != nil {
						t.Fatal(err)
					}
				}
				pw.Close()
				if _, ok := <-lines; ok {
					t.Fatal("data after the request body ended")
				}
			})
		}
	}
}

// bigBody is the size of the large transfers: far more than any buffer
// on the way, so only streaming can pass it.
const bigBody = 64 << 20

// TestLargeUpload: 64 MiB request bodies, with Content-Length and chunked,
// arrive byte for byte (compared by SHA-256 computed while streaming).
func TestLargeUpload(t *testing.T) {
	want := patternSHA256(7, bigBody)
	cases := []struct {
		proto   string
		up      int // index into upstreams
		chunked bool
	}{
		{viaH1, 0, false}, {viaH1, 0, true},
		{viaH1, 1, false}, {viaH1, 1, true},
		{viaH2C, 0, true}, {viaH2, 1, false},
	}
	for _, tc := range cases {
		up := upstreams[tc.up]
		t.Run(fmt.Sprintf("%s to %s chunked=%v", tc.proto, up.name, tc.chunked), func(t *testing.T) {
			env := newProxyEnv(t, nil)
			env.res.set("default", "sb1", resolver.StateRunning, up.proto)
			be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				te := "identity"
				if len(r.TransferEncoding) > 0 {
					te = strings.Join(r.TransferEncoding, ",")
				}
				sum, n, err := hashStream(r.Body)
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				fmt.Fprintf(w, "%s %d %d %s", sum, n, r.ContentLength, te)
			}), up.h2c)
			req := env.sandboxRequest(context.Background(), tc.proto, http.MethodPut, "/upload", be.port, newPatternReader(7, bigBody))
			if !tc.chunked {
				req.ContentLength = bigBody
			}
			res := doRequest(env.client(tc.proto), req)
			if res.err != nil || res.status != 200 {
				t.Fatalf("got %d %q %v", res.status, res.body, res.err)
			}
			f := strings.Fields(res.body)
			if len(f) != 4 || f[0] != want || f[1] != strconv.Itoa(bigBody) {
				t.Fatalf("sandbox got %q, want sha256 %s and %d bytes", res.body, want, bigBody)
			}
			if !up.h2c {
				// Declared lengths are forwarded as such; unknown ones
				// are chunked.
				wantCL, wantTE := strconv.Itoa(bigBody), "identity"
				if tc.chunked {
					wantCL, wantTE = "-1", "chunked"
				}
				if f[2] != wantCL || f[3] != wantTE {
					t.Errorf("sandbox saw Content-Length %s, Transfer-Encoding %s; want %s, %s", f[2], f[3], wantCL, wantTE)
				}
			}
		})
	}
}

// TestLargeDownload: 64 MiB response bodies, of known and unknown length,
// stream to the client intact.
func TestLargeDownload(t *testing.T) {
	want := patternSHA256(9, bigBody)
	cases := []struct {
		proto   string
		up      int
		chunked bool
	}{
		{viaH1, 0, false}, {viaH1, 0, true},
		{viaH1, 1, false}, {viaH1, 1, true},
		{viaH2C, 0, false}, {viaH2, 1, true},
	}
	for _, tc := range cases {
		up := upstreams[tc.up]
		t.Run(fmt.Sprintf("%s to %s chunked=%v", tc.proto, up.name, tc.chunked), func(t *testing.T) {
			env := newProxyEnv(t, nil)
			env.res.set("default", "sb1", resolver.StateRunning, up.proto)
			be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/octet-stream")
				if !tc.chunked {
					w.Header().Set("Content-Length", strconv.Itoa(bigBody))
				}
				io.Copy(w, newPatternReader(9, bigBody))
			}), up.h2c)
			resp, err := env.client(tc.proto).Do(env.sandboxRequest(context.Background(), tc.proto, http.MethodGet, "/download", be.port, nil))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			wantCL := int64(bigBody)
			if tc.chunked {
				wantCL = -1
			}
			if resp.ContentLength != wantCL {
				t.Errorf("client saw Content-Length %d, want %d", resp.ContentLength, wantCL)
			}
			sum, n, err := hashStream(resp.Body)
			if err != nil || n != bigBody || sum != want {
				t.Fatalf("downloaded %d bytes, sha256 %s, err %v; want %d bytes, %s", n, sum, err, bigBody, want)
			}
		})
	}
}
