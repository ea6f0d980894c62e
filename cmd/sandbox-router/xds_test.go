package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// syncedResolver knows no sandbox and never changes.
type syncedResolver struct{ synced chan struct{} }

func (r syncedResolver) Lookup(resolver.Key) resolver.Result { return resolver.Result{} }
func (r syncedResolver) SyncedC() <-chan struct{}            { return r.synced }
func (r syncedResolver) Subscribe() resolver.Feed            { return idleFeed{} }

type idleFeed struct{}

func (idleFeed) Next(ctx context.Context) ([]resolver.Key, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (idleFeed) Close() {}

// TestXDSListenerTLS: the flags serve xDS over the reloading TLS of the
// proxy listener, with client certificates required, and a client speaks
// only for the node its certificate names.
func TestXDSListenerTLS(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := issue(t, dir, "ca", nil, nil, nil)
	issue(t, dir, "server", []net.IP{net.IPv4(127, 0, 0, 1)}, caCert, caKey)
	issue(t, dir, "client", nil, caCert, caKey)
	cfg, err := loadConfig([]string{"--xds-listen", "127.0.0.1:0", "--xds-router-endpoints", "10.0.0.1:8080",
		"--xds-tls-cert", filepath.Join(dir, "server.crt"), "--xds-tls-key", filepath.Join(dir, "server.key"),
		"--xds-tls-client-ca-file", filepath.Join(dir, "ca.crt")}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	synced := make(chan struct{})
	close(synced)
	addr, err := startXDS(t.Context(), cfg, syncedResolver{synced}, nil, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	clientPair, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	ask := func(creds *tls.Config, node *core.Node) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(creds)))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		if err != nil {
			return err
		}
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.VirtualHostType, ResourceNamesSubscribe: []string{"sandboxes"}}); err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	withCert := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientPair}}
	if err := ask(withCert, &core.Node{Id: "envoy-0", Cluster: "client", UserAgentName: "envoy"}); err != nil {
		t.Fatalf("the certificate's node: %v", err)
	}
	if err := ask(withCert, &core.Node{Id: "envoy-0", Cluster: "another", UserAgentName: "envoy"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("another node: %v, want PermissionDenied", err)
	}
	if err := ask(&tls.Config{RootCAs: pool}, &core.Node{Id: "client", UserAgentName: "envoy"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("no client certificate: %v, want the handshake refused", err)
	}
}

// issue writes <name>.crt and <name>.key, signed by ca (self-signed CA
// when ca is nil), with the CN name.
func issue(t *testing.T, dir, name string, ips []net.IP, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	signer, signerKey := tmpl, key
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	} else {
		signer, signerKey = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{name + ".crt": {Type: "CERTIFICATE", Bytes: der}, name + ".key": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
