package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

const (
	// readyTimeout bounds the wait for etcd /health and kube-apiserver /readyz.
	readyTimeout = 90 * time.Second
	// logTailBytes is how much of each process's output a failed test prints.
	logTailBytes = 64 << 10
)

// Cluster is a running etcd and kube-apiserver on loopback.
type Cluster struct {
	// URL is the API server's base URL, https://127.0.0.1:<port>.
	URL string
	// AdminToken is a bearer token of user "admin" in system:masters.
	AdminToken string
	// RouterToken is a bearer token of user "router", without any group
	// beyond system:authenticated, so RBAC applies to it.
	RouterToken string
	// CAFile is the PEM file of the API server's self-signed serving CA.
	CAFile string
	// KubeconfigPath is an admin kubeconfig for the cluster.
	KubeconfigPath string

	t        testing.TB
	bins     binaries
	etcdDir  string
	apiDir   string
	etcdURL  string
	apiPort  int
	mu       sync.Mutex
	etcd     *process
	api      *process
	finished []*process // stopped processes, kept for their logs
}

// Start builds (if needed) and starts etcd and kube-apiserver, waits until
// the API server is ready, and registers a cleanup that stops both. Tests
// using it are skipped with -short.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("cluster: real etcd + kube-apiserver test skipped in -short mode")
	}
	c := &Cluster{t: t, bins: ensureBinaries(t), etcdDir: t.TempDir(), apiDir: t.TempDir()}
	// Registered after the TempDirs, so it runs before they are removed.
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			c.dumpLogs()
		}
	})

	ports, err := freePorts(3)
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	c.etcdURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.apiPort = ports[2]
	c.URL = "https://127.0.0.1:" + strconv.Itoa(c.apiPort)
	c.CAFile = filepath.Join(c.apiDir, "certs", "apiserver.crt")
	c.KubeconfigPath = filepath.Join(c.apiDir, "kubeconfig")

	if c.AdminToken, err = newToken(); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	if c.RouterToken, err = newToken(); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	if err := writeTokens(filepath.Join(c.apiDir, "tokens.csv"), c.AdminToken, c.RouterToken); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	if err := writeServiceAccountKeys(filepath.Join(c.apiDir, "sa.key"), filepath.Join(c.apiDir, "sa.pub")); err != nil {
		t.Fatalf("cluster: %v", err)
	}

	c.etcd, err = startProcess("etcd", c.bins.etcd, filepath.Join(c.etcdDir, "etcd.log"),
		"--name=default",
		"--data-dir="+filepath.Join(c.etcdDir, "data"),
		"--listen-client-urls="+c.etcdURL,
		"--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync", // test data only; keeps slow disks out of the way
	)
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	if err := waitHealthy(c.etcd, http.DefaultClient, c.etcdURL+"/health", ""); err != nil {
		t.Fatalf("cluster: etcd: %v", err)
	}
	c.StartAPIServer()
	if err := writeKubeconfig(c.KubeconfigPath, c.URL, c.CAFile, c.AdminToken); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	return c
}

// StartAPIServer starts kube-apiserver on the cluster's port with the same
// etcd, certificates and tokens, and waits for /readyz. Call it from the
// test goroutine; it fails the test on error.
func (c *Cluster) StartAPIServer() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api != nil {
		c.t.Fatalf("cluster: kube-apiserver is already running")
	}
	d := c.apiDir
	p, err := startProcess("kube-apiserver", c.bins.apiserver, filepath.Join(d, "kube-apiserver.log"),
		"--etcd-servers="+c.etcdURL,
		"--secure-port="+strconv.Itoa(c.apiPort),
		"--bind-address=127.0.0.1",
		"--cert-dir="+filepath.Join(d, "certs"),
		"--service-account-key-file="+filepath.Join(d, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(d, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--token-auth-file="+filepath.Join(d, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--disable-admission-plugins=ServiceAccount",
	)
	if err != nil {
		c.t.Fatalf("cluster: %v", err)
	}
	c.api = p
	if err := c.waitAPIReady(p); err != nil {
		c.t.Fatalf("cluster: kube-apiserver: %v", err)
	}
}

// StopAPIServer stops kube-apiserver (etcd and its data stay), so a test
// can see the API server unreachable and then call StartAPIServer again.
func (c *Cluster) StopAPIServer() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api == nil {
		return
	}
	p := c.api
	c.api = nil
	c.finished = append(c.finished, p)
	if err := p.stop(); err != nil {
		c.t.Errorf("cluster: %v", err)
	}
}

// Stop stops kube-apiserver and then etcd. It is safe to call more than
// once; Start registers it with t.Cleanup.
func (c *Cluster) Stop() {
	c.StopAPIServer()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.etcd == nil {
		return
	}
	p := c.etcd
	c.etcd = nil
	c.finished = append(c.finished, p)
	if err := p.stop(); err != nil {
		c.t.Errorf("cluster: %v", err)
	}
}

// HTTPClient returns a client that trusts the API server's serving CA, with
// a 30s overall request timeout (so not for watches). It sends no
// credentials; set the Authorization header per request.
func (c *Cluster) HTTPClient() (*http.Client, error) {
	pool, err := c.caPool()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

func (c *Cluster) caPool() (*x509.CertPool, error) {
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificates in %s", c.CAFile)
	}
	return pool, nil
}

// waitAPIReady waits until the serving certificate exists and /readyz
// answers 200 over TLS verified against it.
func (c *Cluster) waitAPIReady(p *process) error {
	deadline := time.Now().Add(readyTimeout)
	var client *http.Client
	for client == nil {
		if p.exited() {
			return fmt.Errorf("exited before writing its certificate: %v", p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no serving certificate at %s after %s", c.CAFile, readyTimeout)
		}
		if _, err := os.Stat(c.CAFile); err == nil {
			var err error
			if client, err = c.HTTPClient(); err != nil {
				// The file may be half written; try again.
				client = nil
			}
		}
		if client == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	defer client.CloseIdleConnections()
	return waitHealthy(p, client, c.URL+"/readyz", c.AdminToken)
}

// waitHealthy polls url until it answers 200, the process exits, or
// readyTimeout passes.
func waitHealthy(p *process, client *http.Client, url, token string) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("exited while waiting for %s: %v", url, p.err)
		}
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", url, readyTimeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dumpLogs prints the tail of every process's output.
func (c *Cluster) dumpLogs() {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, p := range c.finished {
		if seen[p.logPath] { // restarts append to the same file
			continue
		}
		seen[p.logPath] = true
		c.t.Logf("cluster: ---- %s output (%s) ----\n%s", p.name, p.logPath, p.logTail(logTailBytes))
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. The listeners
// are held until all ports are picked, so the ports differ.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, errors.Join(errors.New("pick a free port"), err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
