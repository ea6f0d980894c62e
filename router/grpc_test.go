package router

// End-to-end gRPC through the router: a real grpc-go server as the
// sandbox, a grpc-go client dialing the router over h2c or h2 (TLS).

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// grpcCall is what the sandbox saw of one call.
type grpcCall struct {
	md          metadata.MD
	hasDeadline bool
}

// grpcSandbox implements the interop TestService: echoes, statuses on
// request, headers and trailers on every call, and a server stream that
// waits for the test between messages.
type grpcSandbox struct {
	testgrpc.UnimplementedTestServiceServer
	calls chan grpcCall
	gate  chan struct{}
	// streamEnded reports how each server stream's handler ended.
	streamEnded chan error
}

func (s *grpcSandbox) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	_, ok := ctx.Deadline()
	select {
	case s.calls <- grpcCall{md, ok}:
	default:
	}
}

func (s *grpcSandbox) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.record(ctx)
	grpc.SetHeader(ctx, metadata.Pairs("x-sandbox-header", "unary"))
	grpc.SetTrailer(ctx, metadata.Pairs("x-sandbox-trailer", "unary"))
	if st := req.GetResponseStatus(); st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testgrpc.SimpleResponse{Payload: req.GetPayload()}, nil
}

func (s *grpcSandbox) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	s.record(stream.Context())
	stream.SetTrailer(metadata.Pairs("x-sandbox-trailer", "bidi"))
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if st := req.GetResponseStatus(); st.GetCode() != 0 {
			return status.Error(codes.Code(st.GetCode()), st.GetMessage())
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

func (s *grpcSandbox) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) (err error) {
	s.record(stream.Context())
	defer func() { s.streamEnded <- err }()
	for i := range req.GetResponseParameters() {
		msg := &testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte("message " + strconv.Itoa(i))}}
		if err := stream.Send(msg); err != nil {
			return err
		}
		select {
		case <-s.gate: // the test has seen message i
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
	return nil
}

// startGRPCSandbox serves the TestService on 127.0.0.1 (h2c, as gRPC
// servers do without TLS) and returns its port.
func startGRPCSandbox(t *testing.T) (*grpcSandbox, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &grpcSandbox{calls: make(chan grpcCall, 16), gate: make(chan struct{}), streamEnded: make(chan error, 16)}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, s)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return s, ln.Addr().(*net.TCPAddr).Port
}

func TestGRPC(t *testing.T) {
	cases := []struct {
		name     string
		tls      bool              // h2 over TLS to the router, else h2c
		byHeader bool              // route by x-sandbox-* metadata, else by :authority
		upstream resolver.Protocol // auto: the router recognises gRPC
	}{
		{name: "h2c by authority", upstream: resolver.ProtocolAuto},
		{name: "h2c by metadata", byHeader: true, upstream: resolver.ProtocolAuto},
		{name: "h2 tls by authority", tls: true, upstream: resolver.ProtocolAuto},
		{name: "h2c by authority to h2c sandbox", upstream: resolver.ProtocolH2C},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newProxyEnv(t, nil)
			env.res.set("default", "sb1", resolver.StateRunning, tc.upstream)
			sb, port := startGRPCSandbox(t)

			opts := []grpc.DialOption{}
			target := "passthrough:///" + env.httpAddr
			if tc.tls {
				target = "passthrough:///" + env.tlsAddr
				opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: env.roots})))
			} else {
				opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
			}
			if !tc.byHeader {
				opts = append(opts, grpc.WithAuthority(fmt.Sprintf("%d-sb1.default.%s", port, testBaseDomain)))
			}
			cc, err := grpc.NewClient(target, opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cc.Close() })
			client := testgrpc.NewTestServiceClient(cc)

			// callCtx bounds every call and, when routing by header,
			// carries the routing metadata.
			callCtx := func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				ctx = metadata.AppendToOutgoingContext(ctx, "x-custom", "kept")
				if tc.byHeader {
					ctx = metadata.AppendToOutgoingContext(ctx, "x-sandbox-id", "sb1", "x-sandbox-port", strconv.Itoa(port))
				}
				return ctx, cancel
			}

			t.Run("unary", func(t *testing.T) {
				ctx, cancel := callCtx()
				defer cancel()
				body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: flow control on both hops
				var header, trailer metadata.MD
				resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: body}},
					grpc.Header(&header), grpc.Trailer(&trailer))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(resp.GetPayload().GetBody(), body) {
					t.Fatalf("echo of %d bytes came back as %d bytes", len(body), len(resp.GetPayload().GetBody()))
				}
				if got := header.Get("x-sandbox-header"); len(got) != 1 || got[0] != "unary" {
					t.Errorf("header metadata %v", header)
				}
				if got := trailer.Get("x-sandbox-trailer"); len(got) != 1 || got[0] != "unary" {
					t.Errorf("trailer metadata %v", trailer)
				}
				call := recv(t, sb.calls, "the call at the sandbox")
				if !call.hasDeadline {
					t.Error("the client's deadline (grpc-timeout) did not reach the sandbox")
				}
				if got := call.md.Get("x-custom"); len(got) != 1 || got[0] != "kept" {
					t.Errorf("sandbox metadata x-custom = %v", got)
				}
				for _, k := range []string{"x-sandbox-id", "x-sandbox-port"} {
					if v := call.md.Get(k); len(v) != 0 {
						t.Errorf("routing metadata %s reached the sandbox: %v", k, v)
					}
				}
				if got := call.md.Get("x-forwarded-for"); len(got) != 1 || got[0] != "127.0.0.1" {
					t.Errorf("x-forwarded-for = %v", got)
				}
			})

			t.Run("unary error status", func(t *testing.T) {
				// A status without a message is a trailers-only response
				// on the wire: status in the only HEADERS frame.
				ctx, cancel := callCtx()
				defer cancel()
				var trailer metadata.MD
				_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such notebook"}},
					grpc.Trailer(&trailer))
				st, _ := status.FromError(err)
				if st.Code() != codes.NotFound || st.Message() != "no such notebook" {
					t.Fatalf("status %v, want NotFound %q", err, "no such notebook")
				}
				if got := trailer.Get("x-sandbox-trailer"); len(got) != 1 || got[0] != "unary" {
					t.Errorf("trailer metadata with the error: %v", trailer)
				}
				recv(t, sb.calls, "the call at the sandbox")
			})

			t.Run("bidi lock-step", func(t *testing.T) {
				ctx, cancel := callCtx()
				defer cancel()
				stream, err := client.FullDuplexCall(ctx)
				if err != nil {
					t.Fatal(err)
				}
				// Each message is sent only after the previous echo
				// arrived: a buffering hop would stall here until the
				// call's deadline.
				for i := range 10 {
					body := []byte("ping " + strconv.Itoa(i))
					if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: body}}); err != nil {
						t.Fatalf("send %d: %v", i, err)
					}
					resp, err := stream.Recv()
					if err != nil {
						t.Fatalf("recv %d: %v", i, err)
					}
					if !bytes.Equal(resp.GetPayload().GetBody(), body) {
						t.Fatalf("recv %d: %q", i, resp.GetPayload().GetBody())
					}
				}
				if err := stream.CloseSend(); err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != io.EOF {
					t.Fatalf("end of stream: %v, want io.EOF (status OK)", err)
				}
				if got := stream.Trailer().Get("x-sandbox-trailer"); len(got) != 1 || got[0] != "bidi" {
					t.Errorf("trailer metadata %v", stream.Trailer())
				}
				recv(t, sb.calls, "the call at the sandbox")
			})

			t.Run("bidi error after messages", func(t *testing.T) {
				ctx, cancel := callCtx()
				defer cancel()
				stream, err := client.FullDuplexCall(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 2 {
					if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}}); err != nil {
						t.Fatal(err)
					}
					if _, err := stream.Recv(); err != nil {
						t.Fatalf("recv %d: %v", i, err)
					}
				}
				stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "kernel died"}})
				_, err = stream.Recv()
				if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || st.Message() != "kernel died" {
					t.Fatalf("status %v, want FailedPrecondition", err)
				}
				if got := stream.Trailer().Get("x-sandbox-trailer"); len(got) != 1 || got[0] != "bidi" {
					t.Errorf("trailer metadata %v", stream.Trailer())
				}
				recv(t, sb.calls, "the call at the sandbox")
			})

			t.Run("server stream lock-step", func(t *testing.T) {
				ctx, cancel := callCtx()
				defer cancel()
				const n = 5
				stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: make([]*testgrpc.ResponseParameters, n)})
				if err != nil {
					t.Fatal(err)
				}
				recv(t, sb.calls, "the call at the sandbox")
				for i := range n {
					// The sandbox sends message i+1 only after the gate.
					resp, err := stream.Recv()
					if err != nil {
						t.Fatalf("recv %d: %v", i, err)
					}
					if got := string(resp.GetPayload().GetBody()); got != "message "+strconv.Itoa(i) {
						t.Fatalf("recv %d: %q", i, got)
					}
					select {
					case sb.gate <- struct{}{}:
					case <-ctx.Done():
						t.Fatal("sandbox stopped waiting")
					}
				}
				if _, err := stream.Recv(); err != io.EOF {
					t.Fatalf("end of stream: %v", err)
				}
				if err := recv(t, sb.streamEnded, "the sandbox's handler to return"); err != nil {
					t.Fatalf("sandbox handler: %v", err)
				}
			})

			t.Run("client cancel reaches the sandbox", func(t *testing.T) {
				ctx, cancel := callCtx()
				stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: make([]*testgrpc.ResponseParameters, 2)})
				if err != nil {
					t.Fatal(err)
				}
				recv(t, sb.calls, "the call at the sandbox")
				if _, err := stream.Recv(); err != nil {
					t.Fatal(err)
				}
				// The sandbox now waits on the gate or its context; only
				// a cancel that crosses the router ends it.
				cancel()
				if err := recv(t, sb.streamEnded, "the sandbox's stream context to end"); status.Code(err) != codes.Canceled && err != context.Canceled {
					t.Fatalf("sandbox handler ended with %v, want canceled", err)
				}
				if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
					t.Fatalf("after cancel: %v", err)
				}
				// The connections are still fine for the next call.
				ctx2, cancel2 := callCtx()
				defer cancel2()
				if _, err := client.UnaryCall(ctx2, &testgrpc.SimpleRequest{}); err != nil {
					t.Fatalf("call after cancel: %v", err)
				}
				recv(t, sb.calls, "the next call at the sandbox")
			})
		})
	}
}
