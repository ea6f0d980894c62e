package router

// gRPC errors without a message ("trailers-only": grpc-status in the only
// HEADERS frame, END_STREAM set) relayed faithfully: real grpc-go servers
// and clients, h2c and h2 to the router, h2c and auto to the sandbox,
// unary and streaming, with status details, and for a request the
// activator held and released.

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// statusSandbox answers every TestService call with the status it is
// told, before sending anything else, so each error is trailers-only.
type statusSandbox struct {
	testgrpc.UnimplementedTestServiceServer
	st *status.Status
}

func (s *statusSandbox) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return nil, s.st.Err()
}

func (s *statusSandbox) StreamingOutputCall(*testgrpc.StreamingOutputCallRequest, testgrpc.TestService_StreamingOutputCallServer) error {
	return s.st.Err()
}

func (s *statusSandbox) FullDuplexCall(testgrpc.TestService_FullDuplexCallServer) error {
	return s.st.Err()
}

// startStatusSandbox serves the health service (one known service,
// "known", SERVING) and a statusSandbox answering st, and returns its port.
func startStatusSandbox(t *testing.T, st *status.Status) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("known", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	testgrpc.RegisterTestServiceServer(srv, &statusSandbox{st: st})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().(*net.TCPAddr).Port
}

// dialRouter is a grpc-go client to the router, over TLS (h2) or h2c,
// routing by :authority to default/sb1 on port.
func dialRouter(t *testing.T, env *proxyEnv, tlsClient bool, port int) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithAuthority(strconv.Itoa(port) + "-sb1.default." + testBaseDomain)}
	target := "passthrough:///" + env.httpAddr
	if tlsClient {
		target = "passthrough:///" + env.tlsAddr
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: env.roots})))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestGRPCTrailersOnlyStatus(t *testing.T) {
	withDetails, err := status.New(codes.PermissionDenied, "").WithDetails(&errdetails.ErrorInfo{Reason: "QUOTA", Domain: "sandbox.example"})
	if err != nil {
		t.Fatal(err)
	}
	statuses := []*status.Status{
		status.New(codes.NotFound, ""),
		status.New(codes.Unimplemented, ""),
		status.New(codes.Unauthenticated, "token expired"),
		withDetails,
	}
	for _, tlsClient := range []bool{false, true} {
		for _, upstream := range []resolver.Protocol{resolver.ProtocolAuto, resolver.ProtocolH2C} {
			name := "h2c"
			if tlsClient {
				name = "h2"
			}
			name += " to " + map[resolver.Protocol]string{resolver.ProtocolAuto: "auto", resolver.ProtocolH2C: "h2c"}[upstream]
			t.Run(name, func(t *testing.T) {
				env := newProxyEnv(t, nil)
				env.res.set("default", "sb1", resolver.StateRunning, upstream)

				t.Run("health check of an unknown service", func(t *testing.T) {
					cc := dialRouter(t, env, tlsClient, startStatusSandbox(t, status.New(codes.OK, "")))
					ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
					defer cancel()
					hc := healthpb.NewHealthClient(cc)
					_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
					if status.Code(err) != codes.NotFound {
						t.Fatalf("Check(unknown) = %v, want NotFound", err)
					}
					resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "known"})
					if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
						t.Fatalf("Check(known) = %v, %v; the connection must still serve", resp, err)
					}
				})
				for _, want := range statuses {
					t.Run(want.Code().String(), func(t *testing.T) {
						cc := dialRouter(t, env, tlsClient, startStatusSandbox(t, want))
						client := testgrpc.NewTestServiceClient(cc)
						ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
						defer cancel()

						_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
						checkStatus(t, "unary", err, want)

						ss, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
						if err == nil {
							_, err = ss.Recv()
						}
						checkStatus(t, "server stream", err, want)

						bidi, err := client.FullDuplexCall(ctx)
						if err == nil {
							_, err = bidi.Recv()
						}
						checkStatus(t, "bidi stream", err, want)
					})
				}
			})
		}
	}
}

// checkStatus compares a call's error with the status the sandbox sent,
// details included (they travel in grpc-status-details-bin).
func checkStatus(t *testing.T, call string, err error, want *status.Status) {
	t.Helper()
	got, ok := status.FromError(err)
	if !ok || got.Code() != want.Code() || got.Message() != want.Message() {
		t.Errorf("%s: got %v, want %s %q", call, err, want.Code(), want.Message())
		return
	}
	if len(got.Details()) != len(want.Details()) {
		t.Errorf("%s: %d details, want %d", call, len(got.Details()), len(want.Details()))
		return
	}
	for i, d := range want.Details() {
		wi, gi := d.(*errdetails.ErrorInfo), got.Details()[i].(*errdetails.ErrorInfo)
		if wi.GetReason() != gi.GetReason() || wi.GetDomain() != gi.GetDomain() {
			t.Errorf("%s: detail %d = %v, want %v", call, i, gi, wi)
		}
	}
}

// TestGRPCTrailersOnlyAfterHold: a call held while its sandbox resumes is
// released and gets the sandbox's trailers-only status.
func TestGRPCTrailersOnlyAfterHold(t *testing.T) {
	res := newSandboxResolver()
	act := &holdingActivator{res: res}
	env := newProxyEnv(t, func(o *Options) {
		o.Resolver = res
		o.Activator = act
	})
	res.set("default", "sb1", resolver.StateSuspended, resolver.ProtocolAuto)
	cc := dialRouter(t, env, false, startStatusSandbox(t, status.New(codes.PermissionDenied, "")))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", "held")
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("held Check(unknown) = %v, want NotFound", err)
	}
	_, err = testgrpc.NewTestServiceClient(cc).UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied {
		t.Fatalf("unary after the hold = %v, want PermissionDenied", err)
	}
	if n := act.calls.Load(); n != 1 {
		t.Errorf("activator called %d times, want 1 (the second call found the sandbox running)", n)
	}
	if n := act.released.Load(); n != 1 {
		t.Errorf("release called %d times, want 1", n)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("call timed out")
	}
}

// TestGRPCRouterErrors: the router's own errors reach a gRPC client as
// gRPC statuses (not an HTTP error gRPC cannot read): an unknown sandbox
// is NotFound over h2c and h2, a malformed host InvalidArgument (over h2c:
// no certificate covers it).
func TestGRPCRouterErrors(t *testing.T) {
	env := newProxyEnv(t, nil)
	for _, tc := range []struct {
		tls       bool
		authority string
		want      codes.Code
	}{
		{false, "9000-nobody.default." + testBaseDomain, codes.NotFound},
		{true, "9000-nobody.default." + testBaseDomain, codes.NotFound},
		{false, "a.b.c.default." + testBaseDomain, codes.InvalidArgument},
	} {
		target, creds := "passthrough:///"+env.httpAddr, insecure.NewCredentials()
		if tc.tls {
			target, creds = "passthrough:///"+env.tlsAddr, credentials.NewTLS(&tls.Config{RootCAs: env.roots})
		}
		cc, err := grpc.NewClient(target, grpc.WithAuthority(tc.authority), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		cc.Close()
		if st, _ := status.FromError(err); st.Code() != tc.want || st.Message() == "" {
			t.Errorf("tls=%v %s: %v, want %s with a message", tc.tls, tc.authority, err, tc.want)
		}
	}
}

func TestGRPCMessageEncoding(t *testing.T) {
	for in, want := range map[string]string{"plain text (code)": "plain text (code)", "100%": "100%25", "é\n": "%C3%A9%0A"} {
		if got := grpcMessage(in); got != want {
			t.Errorf("grpcMessage(%q) = %q, want %q", in, got, want)
		}
	}
}
