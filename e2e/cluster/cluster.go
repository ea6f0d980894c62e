package cluster

import (
	"context"
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
	// readyTimeout bounds the wait for etcd /health and kube-apiserver
	// /readyz when the caller's context has no earlier deadline.
	readyTimeout = 90 * time.Second
	// logTailBytes is how much of each process's output a failed test prints.
	logTailBytes = 64 << 10
)

// Options configure New.
type Options struct {
	// Dir is the work directory: etcd's data, the API server's
	// certificates, keys, token file, kubeconfig and both processes' logs
	// live under it. It is created if missing and left in place by Close.
	// Empty means a fresh temporary directory that Close removes.
	Dir string
	// Logf receives progress lines (binary builds, process starts and
	// stops). Nil discards them.
	Logf func(format string, args ...any)
}

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
	// Dir is the work directory (Options.Dir or the temporary one).
	Dir string
	// AuditLogPath is the API server's audit log (JSON lines) of Sandbox
	// writes and Lease requests; read it with AuditEvents.
	AuditLogPath string

	logf     func(string, ...any)
	removeWD bool // Dir was made by New; Close removes it
	bins     binaries
	etcdDir  string
	apiDir   string
	etcdURL  string
	apiPort  int
	mu       sync.Mutex
	etcd     *process
	api      *process
	finished []*process // stopped processes, kept for their logs
	closed   bool

	auditMu     sync.Mutex   // guards the audit log read so far
	auditOffset int64        // bytes of AuditLogPath parsed
	auditEvents []AuditEvent // the events in them
}

// Start is New for tests: it skips the test with -short, builds and starts
// the cluster in t.TempDir(), fails the test on error, and registers a
// cleanup that stops both processes and prints their output if the test
// failed.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("cluster: real etcd + kube-apiserver test skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a cold build takes minutes
	defer cancel()
	c, err := New(ctx, Options{Dir: t.TempDir(), Logf: t.Logf})
	if c != nil {
		// Registered after the TempDir, so it runs before it is removed.
		t.Cleanup(func() {
			if err := c.Close(); err != nil {
				t.Errorf("cluster: %v", err)
			}
			if t.Failed() {
				c.DumpLogs(t.Logf)
			}
		})
	}
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	return c
}

// New builds kube-apiserver and etcd if needed (see the package doc),
// starts both on free loopback ports, waits until the API server is ready
// and writes an admin kubeconfig. ctx bounds the build and the start, not
// the life of the processes: they run until Close. On error the returned
// Cluster, if not nil, has already been closed but still serves DumpLogs.
func New(ctx context.Context, opts Options) (*Cluster, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	bins, err := ensureBinaries(ctx, logf)
	if err != nil {
		return nil, err
	}
	c := &Cluster{logf: logf, bins: bins, Dir: opts.Dir}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "sandbox-router-cluster-"); err != nil {
			return nil, err
		}
		c.removeWD = true
	}
	if err := c.start(ctx); err != nil {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return c, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	c.etcdDir = filepath.Join(c.Dir, "etcd")
	c.apiDir = filepath.Join(c.Dir, "apiserver")
	for _, d := range []string{c.etcdDir, c.apiDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	c.etcdURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.apiPort = ports[2]
	c.URL = "https://127.0.0.1:" + strconv.Itoa(c.apiPort)
	c.CAFile = filepath.Join(c.apiDir, "certs", "apiserver.crt")
	c.KubeconfigPath = filepath.Join(c.apiDir, "kubeconfig")

	if c.AdminToken, err = newToken(); err != nil {
		return err
	}
	if c.RouterToken, err = newToken(); err != nil {
		return err
	}
	if err := writeTokens(filepath.Join(c.apiDir, "tokens.csv"), c.AdminToken, c.RouterToken); err != nil {
		return err
	}
	if err := writeServiceAccountKeys(filepath.Join(c.apiDir, "sa.key"), filepath.Join(c.apiDir, "sa.pub")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.apiDir, "audit-policy.yaml"), []byte(auditPolicy), 0o644); err != nil {
		return err
	}
	c.AuditLogPath = filepath.Join(c.apiDir, "audit.log")

	p, err := startProcess("etcd", c.bins.etcd, filepath.Join(c.etcdDir, "etcd.log"),
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
		return err
	}
	c.mu.Lock()
	c.etcd = p
	c.mu.Unlock()
	c.logf("cluster: etcd started (pid %d) on %s", p.cmd.Process.Pid, c.etcdURL)
	if err := waitHealthy(ctx, p, http.DefaultClient, c.etcdURL+"/health", ""); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	if err := c.StartAPIServer(ctx); err != nil {
		return err
	}
	return c.WriteKubeconfig(c.KubeconfigPath, c.AdminToken)
}

// StartAPIServer starts kube-apiserver on the cluster's port with the same
// etcd, certificates and tokens, and waits for /readyz. New calls it; call
// it again after StopAPIServer to restart the API server.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("cluster is closed")
	}
	if c.api != nil {
		return errors.New("kube-apiserver is already running")
	}
	d := c.apiDir
	args := []string{
		"--etcd-servers=" + c.etcdURL,
		"--secure-port=" + strconv.Itoa(c.apiPort),
		"--bind-address=127.0.0.1",
		"--cert-dir=" + filepath.Join(d, "certs"),
		"--service-account-key-file=" + filepath.Join(d, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(d, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--token-auth-file=" + filepath.Join(d, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--disable-admission-plugins=ServiceAccount",
		// The audit log (audit.go): appended to, so restarts add to it;
		// written synchronously in the request's handler; never rotated,
		// so AuditEvents sees every event.
		"--audit-policy-file=" + filepath.Join(d, "audit-policy.yaml"),
		"--audit-log-path=" + c.AuditLogPath,
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
		"--audit-log-maxsize=0",
	}
	p, err := startProcess("kube-apiserver", c.bins.apiserver, filepath.Join(d, "kube-apiserver.log"), args...)
	if err != nil {
		return err
	}
	c.api = p
	c.logf("cluster: kube-apiserver started (pid %d) on %s", p.cmd.Process.Pid, c.URL)
	if err := c.waitAPIReady(ctx, p); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

// StopAPIServer stops kube-apiserver (etcd and its data stay), so a test
// can see the API server unreachable and then call StartAPIServer again.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopLocked(&c.api)
}

// Close stops kube-apiserver and then etcd, each by its PID, and removes
// the work directory if New made it. It is safe to call more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	err := errors.Join(c.stopLocked(&c.api), c.stopLocked(&c.etcd))
	if c.removeWD {
		// Keep the logs readable for DumpLogs first.
		c.keepLogTails()
		err = errors.Join(err, os.RemoveAll(c.Dir))
	}
	return err
}

// KillAPIServer stops kube-apiserver with SIGKILL, as a crash or a lost
// node would: its clients see their connections reset at once, without
// the graceful shutdown that keeps the process waiting on open watches.
func (c *Cluster) KillAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopWith(&c.api, (*process).kill)
}

func (c *Cluster) stopLocked(pp **process) error { return c.stopWith(pp, (*process).stop) }

func (c *Cluster) stopWith(pp **process, stop func(*process) error) error {
	p := *pp
	if p == nil {
		return nil
	}
	*pp = nil
	c.finished = append(c.finished, p)
	err := stop(p)
	c.logf("cluster: %s (pid %d) stopped", p.name, p.cmd.Process.Pid)
	return err
}

// keepLogTails reads the finished processes' log tails into memory before
// their files are removed.
func (c *Cluster) keepLogTails() {
	for _, p := range c.finished {
		if p.savedTail == "" {
			p.savedTail = p.logTail(logTailBytes)
		}
	}
}

// DumpLogs writes the tail of every process's output to logf; Start calls
// it when a test failed.
func (c *Cluster) DumpLogs(logf func(format string, args ...any)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, p := range append(append([]*process(nil), c.finished...), c.etcd, c.api) {
		if p == nil || seen[p.logPath] { // restarts append to the same file
			continue
		}
		seen[p.logPath] = true
		tail := p.savedTail
		if tail == "" {
			tail = p.logTail(logTailBytes)
		}
		logf("cluster: ---- %s output (%s) ----\n%s", p.name, p.logPath, tail)
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

// withReadyTimeout bounds ctx by readyTimeout unless it ends sooner.
func withReadyTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < readyTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, readyTimeout)
}

// waitAPIReady waits until the serving certificate exists and /readyz
// answers 200 over TLS verified against it.
func (c *Cluster) waitAPIReady(ctx context.Context, p *process) error {
	ctx, cancel := withReadyTimeout(ctx)
	defer cancel()
	var client *http.Client
	for client == nil {
		if p.exited() {
			return fmt.Errorf("exited before writing its certificate: %v", p.err)
		}
		if _, err := os.Stat(c.CAFile); err == nil {
			var err error
			if client, err = c.HTTPClient(); err != nil {
				// The file may be half written; try again.
				client = nil
			}
		}
		if client == nil {
			if err := sleep(ctx, p, 100*time.Millisecond); err != nil {
				return fmt.Errorf("no serving certificate at %s: %w", c.CAFile, err)
			}
		}
	}
	defer client.CloseIdleConnections()
	return waitHealthy(ctx, p, client, c.URL+"/readyz", c.AdminToken)
}

// waitHealthy polls url until it answers 200, the process exits, or ctx
// (bounded by readyTimeout) ends.
func waitHealthy(ctx context.Context, p *process, client *http.Client, url, token string) error {
	ctx, cancel := withReadyTimeout(ctx)
	defer cancel()
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("exited while waiting for %s: %v", url, p.err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
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
		if err := sleep(ctx, p, 200*time.Millisecond); err != nil {
			return fmt.Errorf("%s not ready: %w (last: %v)", url, err, last)
		}
	}
}

// sleep waits d, or until ctx ends or p exits (then it returns an error).
func sleep(ctx context.Context, p *process, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited: %v", p.name, p.err)
	case <-ctx.Done():
		return ctx.Err()
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
