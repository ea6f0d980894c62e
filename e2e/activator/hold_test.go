package activator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
)

// TestHoldOneResume: however many requests of whatever protocol wait for
// a suspended sandbox, the router sends exactly one resume patch, holds
// them all while the pod starts, and then serves every one.
//
// The router runs with no idle timeout, so it writes no last-activity
// annotations: every patch of a sandbox by the router's user in the audit
// log (which records metadata, not bodies) is a resume.
func TestHoldOneResume(t *testing.T) {
	const ns = "hold"
	e := newEnv(t, simSpec{namespaces: []string{ns}})
	for _, name := range []string{"many", "ws", "grpc", "mixed", "health"} {
		e.createSandbox(t, ns, name, true, nil)
	}
	// Created before the router starts: once its caches synced it knows
	// them as suspended, and the first request is held, not a 404.
	p := e.startRouter(t, "--leader-election=false")

	t.Run("200 concurrent HTTP requests", func(t *testing.T) {
		before := metricSum(t, p, mResumes)
		replies := concurrently(200, func(int) reply { return get(t.Context(), p, ns, "many") })
		for i, r := range replies {
			if !r.servedBy("many") {
				t.Fatalf("request %d: %v", i, r)
			}
		}
		checkOneResume(t, e, p, ns, "many", before)
	})

	t.Run("20 concurrent WebSockets", func(t *testing.T) {
		before := metricSum(t, p, mResumes)
		errs := concurrently(20, func(i int) error { return wsEcho(t.Context(), p, ns, "ws", i) })
		for i, err := range errs {
			if err != nil {
				t.Fatalf("WebSocket %d: %v", i, err)
			}
		}
		checkOneResume(t, e, p, ns, "ws", before)
	})

	t.Run("20 concurrent gRPC streams", func(t *testing.T) {
		conn := grpcConn(t, p)
		before := metricSum(t, p, mResumes)
		errs := concurrently(20, func(i int) error { return grpcEcho(t.Context(), conn, ns, "grpc", i) })
		for i, err := range errs {
			if err != nil {
				t.Fatalf("gRPC stream %d: %v", i, err)
			}
		}
		checkOneResume(t, e, p, ns, "grpc", before)
	})

	t.Run("held gRPC calls get the sandbox's own statuses, trailers-only ones too", func(t *testing.T) {
		// A real grpc-go server in the sim pod with the health service:
		// "" is SERVING, any other service NotFound with no message,
		// which grpc-go sends trailers-only (the status in the only
		// HEADERS frame) and which must not turn into Internal.
		conn, err := grpc.NewClient("passthrough:///"+p.HTTPAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		hc := healthpb.NewHealthClient(conn)
		before := metricSum(t, p, mResumes)
		errs := concurrently(10, func(i int) error {
			ctx := metadata.AppendToOutgoingContext(t.Context(), "x-sandbox-id", "health", "x-sandbox-namespace", ns,
				"x-sandbox-port", strconv.Itoa(int(healthPort)))
			if i%2 == 0 {
				if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"}); status.Code(err) != codes.NotFound {
					return fmt.Errorf("Check(unknown) = %v, want NotFound", err)
				}
				return nil
			}
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("Check() = %v, %v, want SERVING", resp, err)
			}
			return nil
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		checkOneResume(t, e, p, ns, "health", before)
	})

	t.Run("HTTP, WebSockets and gRPC streams on two ports together", func(t *testing.T) {
		conn := grpcConn(t, p)
		before := metricSum(t, p, mResumes)
		errs := concurrently(60, func(i int) error {
			switch i % 3 {
			case 0:
				if r := get(t.Context(), p, ns, "mixed"); !r.servedBy("mixed") {
					return fmt.Errorf("HTTP: %v", r)
				}
				return nil
			case 1:
				return wsEcho(t.Context(), p, ns, "mixed", i)
			}
			return grpcEcho(t.Context(), conn, ns, "mixed", i)
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		checkOneResume(t, e, p, ns, "mixed", before)
	})
}

// checkOneResume checks, once the held requests were served, that the
// router sent exactly one resume call (its own count, which a call is
// added to when it returned, any result) and that the API server saw
// exactly one patch of the sandbox by the router's user, successful.
func checkOneResume(t *testing.T, e *env, p *routerproc.Proc, ns, name string, resumesBefore float64) {
	t.Helper()
	got := waitMetricSum(t, p, mResumes, func(v float64) bool { return v > resumesBefore })
	if got -= resumesBefore; got != 1 {
		t.Errorf("the router made %v resume calls, want 1", got)
	}
	patches := e.waitRouterPatches(t, ns, name, 1)
	if len(patches) != 1 || patches[0].Code != http.StatusOK {
		t.Fatalf("router patches of %s/%s: %+v, want one, 200", ns, name, patches)
	}
	if held := metric(t, p, mHeld); held != 0 {
		t.Errorf("%v requests still held", held)
	}
}

// concurrently runs n calls of f at once and returns their results.
func concurrently[T any](n int, f func(i int) T) []T {
	out := make([]T, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i] = f(i) })
	}
	wg.Wait()
	return out
}

// wsEcho opens a WebSocket to the sandbox's /ws through the router (the
// upgrade is held while the sandbox resumes) and checks two echoes.
func wsEcho(ctx context.Context, p *routerproc.Proc, ns, name string, i int) error {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	h := http.Header{}
	setKey(h, ns, name)
	c, resp, err := websocket.Dial(ctx, "ws://"+p.HTTPAddr+"/ws", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("dial: %w: %d %s", err, resp.StatusCode, body)
		}
		return fmt.Errorf("dial: %w", err)
	}
	defer c.CloseNow()
	for j := range 2 {
		msg := fmt.Sprintf("hello %d.%d", i, j)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if typ != websocket.MessageText || string(got) != msg {
			return fmt.Errorf("echo %q, want %q", got, msg)
		}
	}
	return c.Close(websocket.StatusNormalClosure, "")
}

// rawCodec sends and receives gRPC messages as plain bytes, so a grpc-go
// client can talk to the sim's echo stream without generated code.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "raw" }

// grpcConn is a grpc-go client of the router's h2c listener.
func grpcConn(t *testing.T, p *routerproc.Proc) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+p.HTTPAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// grpcEcho opens a bidirectional gRPC stream to the sandbox's gRPC port
// through the router (held while it resumes): the first message is sent
// before the sandbox runs, the second after the first echo; closing the
// send side must end the stream with status OK.
func grpcEcho(ctx context.Context, conn *grpc.ClientConn, ns, name string, i int) error {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-sandbox-id", name, "x-sandbox-namespace", ns,
		"x-sandbox-port", strconv.Itoa(int(grpcPort)))
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/echo")
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	for j := range 2 {
		msg := []byte(fmt.Sprintf("message %d.%d", i, j))
		if err := stream.SendMsg(&msg); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		var got []byte
		if err := stream.RecvMsg(&got); err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if string(got) != string(msg) {
			return fmt.Errorf("echo %q, want %q", got, msg)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	var extra []byte
	if err := stream.RecvMsg(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("end of stream: %v, want io.EOF (status OK)", err)
	}
	return nil
}

// TestHoldFailures: the ways a held request ends without its sandbox.
// A second sim plays the namespace "slow", whose pods stay Pending until
// the test marks them Ready, so requests stay held as long as a case
// needs.
func TestHoldFailures(t *testing.T) {
	const failures, slow = "failures", "slow"
	e := newEnv(t, simSpec{namespaces: []string{failures}}, simSpec{namespaces: []string{slow}, manualReady: true})
	long := map[string]string{holdAnnotation: "10m"}
	e.createSandbox(t, failures, "impatient", true, map[string]string{holdAnnotation: "200ms"})
	e.createSandbox(t, slow, "crowded", true, long)
	e.createSandbox(t, slow, "abandoned", true, long)
	e.createSandbox(t, slow, "doomed", true, long)
	p := e.startRouter(t, "--leader-election=false", "--max-held-per-sandbox", "3")

	t.Run("hold timeout", func(t *testing.T) {
		// The pod takes 500ms to start, the hold 200ms at most.
		r := get(t.Context(), p, failures, "impatient")
		if !r.is(http.StatusGatewayTimeout, "resume_timeout") {
			t.Fatalf("held past its hold timeout: %v, want 504 resume_timeout", r)
		}
		if got := metric(t, p, mHoldTimeouts); got != 1 {
			t.Errorf("hold timeouts: %v, want 1", got)
		}
		// The resume was sent and goes on without the client.
		e.waitRunning(t, failures, "impatient")
		eventually(t, p, failures, "impatient", "served once running", func(r reply) bool { return r.servedBy("impatient") })
		if n := len(e.waitRouterPatches(t, failures, "impatient", 1)); n != 1 {
			t.Errorf("%d resume patches, want 1", n)
		}
	})

	t.Run("hold queue full", func(t *testing.T) {
		held := metric(t, p, mHeld)
		replies := make(chan reply, 3)
		for range 3 {
			go func() { replies <- get(t.Context(), p, slow, "crowded") }()
		}
		waitMetric(t, p, mHeld, func(v float64) bool { return v == held+3 })
		r := get(t.Context(), p, slow, "crowded")
		if !r.is(http.StatusServiceUnavailable, "hold_queue_full") || r.RetryAfter == "" {
			t.Fatalf("fourth request: %v, want 503 hold_queue_full with Retry-After", r)
		}
		if got := metric(t, p, mOverflowSbx); got != 1 {
			t.Errorf("overflow{bound=sandbox}: %v, want 1", got)
		}
		// The three held are served once the pod is Ready.
		markReady(t, e, slow, "crowded")
		for range 3 {
			if r := <-replies; !r.servedBy("crowded") {
				t.Fatalf("held request: %v", r)
			}
		}
	})

	t.Run("client gone", func(t *testing.T) {
		held := metric(t, p, mHeld)
		timeouts := metric(t, p, mHoldTimeouts)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan reply, 1)
		go func() { done <- get(ctx, p, slow, "abandoned") }()
		waitMetric(t, p, mHeld, func(v float64) bool { return v == held+1 })
		cancel()
		if r := <-done; !errors.Is(r.Err, context.Canceled) {
			t.Fatalf("canceled request: %v", r)
		}
		// Released as soon as its connection closed: the hold timeout
		// is 10 minutes, the wait bounded by a minute.
		waitMetric(t, p, mHeld, func(v float64) bool { return v == held })
		if got := metric(t, p, mHoldTimeouts); got != timeouts {
			t.Errorf("hold timeouts %v -> %v: a client that left is no timeout", timeouts, got)
		}
	})

	t.Run("sandbox deleted", func(t *testing.T) {
		held := metric(t, p, mHeld)
		replies := make(chan reply, 3)
		for range 3 {
			go func() { replies <- get(t.Context(), p, slow, "doomed") }()
		}
		waitMetric(t, p, mHeld, func(v float64) bool { return v == held+3 })
		deleted := time.Now()
		e.deleteSandbox(t, slow, "doomed")
		for range 3 {
			if r := <-replies; !r.is(http.StatusNotFound, "sandbox_deleted") {
				t.Fatalf("held request of a deleted sandbox: %v, want 404 sandbox_deleted", r)
			}
		}
		// Answered at once (the hold timeout is 10 minutes).
		t.Logf("held requests failed %v after the delete", time.Since(deleted).Round(time.Millisecond))
		waitMetric(t, p, mHeld, func(v float64) bool { return v == held })
	})
}

// markReady waits for the sandbox's pod (created by the resume) and marks
// it Ready.
func markReady(t *testing.T, e *env, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	s := e.sims[ns]
	if _, err := s.WaitPod(ctx, ns, name, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkReady(ctx, ns, name); err != nil {
		t.Fatal(err)
	}
}
