package router

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/fsnotify/fsnotify"
)

// ClientAuth is what the HTTPS listener asks of client certificates.
type ClientAuth uint8

const (
	// ClientAuthOff asks for none.
	ClientAuthOff ClientAuth = iota
	// ClientAuthOptional verifies a certificate a client sends against
	// the client CA, and admits clients without one (a certificate that
	// fails verification fails the handshake).
	ClientAuthOptional
	// ClientAuthRequired refuses the handshake without a valid one.
	ClientAuthRequired
)

// certReloader serves the TLS certificate, and the client CA when clients
// are asked for certificates, from files, and swaps them when the files
// change (cert-manager renewals, Secret and ConfigMap updates), without a
// restart. A file that fails to load leaves the current one in force.
type certReloader struct {
	certFile, keyFile string
	caFile            string // "" when clientAuth is off
	clientAuth        ClientAuth
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
	// config is the whole TLS configuration with the current client CA,
	// rebuilt when the CA changes and handed to each handshake as it is
	// (GetConfigForClient), so a handshake never pays for building one.
	config  atomic.Pointer[tls.Config]
	reloads atomic.Int64
}

func newCertReloader(certFile, keyFile, caFile string, clientAuth ClientAuth, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, caFile: caFile, clientAuth: clientAuth, log: log}
	if clientAuth != ClientAuthOff && caFile == "" {
		return nil, errors.New("client certificates need a client CA file")
	}
	if err := c.loadPair(); err != nil {
		return nil, err
	}
	if err := c.loadCA(); err != nil {
		return nil, err
	}
	return c, nil
}

// tlsConfig is the listener's configuration.
func (c *certReloader) tlsConfig() *tls.Config {
	if c.clientAuth == ClientAuthOff {
		return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.getCertificate}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: c.getConfigForClient}
}

func (c *certReloader) loadPair() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS key pair: %w", err)
	}
	c.cert.Store(&pair)
	c.reloads.Add(1)
	return nil
}

func (c *certReloader) loadCA() error {
	if c.clientAuth == ClientAuthOff {
		return nil
	}
	data, err := os.ReadFile(c.caFile)
	if err != nil {
		return fmt.Errorf("load client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return fmt.Errorf("load client CA: %s holds no PEM certificate", c.caFile)
	}
	mode := tls.VerifyClientCertIfGiven
	if c.clientAuth == ClientAuthRequired {
		mode = tls.RequireAndVerifyClientCert
	}
	c.config.Store(&tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.getCertificate,
		ClientCAs:      pool,
		ClientAuth:     mode,
		// net/http sets these on the listener's configuration, not on
		// one returned per handshake.
		NextProtos: []string{"h2", "http/1.1"},
	})
	return nil
}

func (c *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
}

func (c *certReloader) getConfigForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	return c.config.Load(), nil
}

// watch reloads on any change in the directories holding the files; the
// directories, not the files, because Secret mounts swap a symlink.
func (c *certReloader) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch TLS files: %w", err)
	}
	defer w.Close()
	dirs := map[string]bool{filepath.Dir(c.certFile): true, filepath.Dir(c.keyFile): true}
	if c.caFile != "" {
		dirs[filepath.Dir(c.caFile)] = true
	}
	for d := range dirs {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("watch %s: %w", d, err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.Errors:
			c.log.Warn("TLS watch error", "err", err)
		case <-w.Events:
			// Each file keeps its current version when the new one fails
			// to load: often transient, the cert written before the key.
			if err := c.loadPair(); err != nil {
				c.log.Warn("TLS reload failed; keeping the current certificate", "err", err)
			} else {
				c.log.Info("TLS certificate reloaded", "cert", c.certFile)
			}
			if err := c.loadCA(); err != nil {
				c.log.Warn("client CA reload failed; keeping the current one", "err", err)
			} else if c.caFile != "" {
				c.log.Info("client CA reloaded", "ca", c.caFile)
			}
		}
	}
}

// ReloadingTLS is a server TLS configuration served from files and
// reloaded when they change until ctx ends, as the HTTPS listener's is:
// for other listeners of the process (the xDS server).
func ReloadingTLS(ctx context.Context, certFile, keyFile, caFile string, clientAuth ClientAuth, log *slog.Logger) (*tls.Config, error) {
	c, err := newCertReloader(certFile, keyFile, caFile, clientAuth, log)
	if err != nil {
		return nil, err
	}
	go func() {
		if err := c.watch(ctx); err != nil {
			log.Warn("TLS reload disabled", "cert", certFile, "err", err)
		}
	}()
	cfg := c.tlsConfig()
	cfg.NextProtos = []string{"h2"}
	return cfg, nil
}
