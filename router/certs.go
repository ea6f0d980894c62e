package router

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"

	"github.com/fsnotify/fsnotify"
)

// certReloader serves the TLS certificate from files and swaps it when the
// files change (cert-manager renewals, Secret updates), without a restart.
// A pair that fails to load leaves the current certificate in force.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
	reloads           atomic.Int64
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) load() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS key pair: %w", err)
	}
	c.cert.Store(&pair)
	c.reloads.Add(1)
	return nil
}

func (c *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
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
			if err := c.load(); err != nil {
				// Often transient: the cert was written before the key.
				c.log.Warn("TLS reload failed; keeping the current certificate", "err", err)
				continue
			}
			c.log.Info("TLS certificate reloaded", "cert", c.certFile)
		}
	}
}
