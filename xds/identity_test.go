package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// firstError opens a delta stream as node, sends one request and returns
// the stream's error (nil when it was answered).
func firstError(t *testing.T, conn *grpc.ClientConn, node *core.Node) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: vh, ResourceNamesSubscribe: []string{"sandboxes/a.ns.example.com"}}); err != nil {
		return err
	}
	_, err = st.Recv()
	return err
}

func TestNodeIDRequired(t *testing.T) {
	s, addr := startServer(t, Options{Resolver: newFakeResolver()})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := firstError(t, conn, &core.Node{UserAgentName: "envoy"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no node id: %v, want InvalidArgument", err)
	}
	if err := firstError(t, conn, envoyNode("envoy-1")); err != nil {
		t.Fatalf("with a node id: %v", err)
	}
	if n := testutil.ToFloat64(s.metrics.refused.WithLabelValues("node_identity")); n != 1 {
		t.Fatalf("refused = %v, want 1", n)
	}
}

// TestNodeIdentityFromCertificate: with client certificates required, a
// client speaks only for the node its certificate names.
func TestNodeIdentityFromCertificate(t *testing.T) {
	ca := newCA(t)
	serverCert := ca.issue(t, "xds", []net.IP{net.IPv4(127, 0, 0, 1)})
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	serverTLS := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{serverCert},
		ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	_, addr := startServer(t, Options{Resolver: newFakeResolver(), TLS: serverTLS})

	clientCert := ca.issue(t, "ingress-envoy", nil)
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}, ServerName: "127.0.0.1"})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The certificate's CN as the node's cluster (Envoy's --service-cluster).
	if err := firstError(t, conn, &core.Node{Id: "pod-1", Cluster: "ingress-envoy", UserAgentName: "envoy"}); err != nil {
		t.Fatalf("matching cluster: %v", err)
	}
	if err := firstError(t, conn, &core.Node{Id: "ingress-envoy", UserAgentName: "envoy"}); err != nil {
		t.Fatalf("matching id: %v", err)
	}
	if err := firstError(t, conn, &core.Node{Id: "other", Cluster: "other", UserAgentName: "envoy"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("another node's name: %v, want PermissionDenied", err)
	}
	// No certificate: the handshake fails.
	plain, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := firstError(t, plain, envoyNode("ingress-envoy")); status.Code(err) != codes.Unavailable {
		t.Fatalf("no client certificate: %v, want Unavailable", err)
	}
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) issue(t *testing.T, cn string, ips []net.IP) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
