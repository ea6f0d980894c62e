package scoped

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Verifier verifies scoped tokens with the keys of its files, reloaded
// when they change. It is safe for concurrent use.
type Verifier struct {
	secretFile string // v1: the shared secret; "" disables v1
	keyDir     string // v2: every *.pem in it is a public key; "" disables v2
	log        *slog.Logger
	now        func() time.Time
	keys       atomic.Pointer[keySet]
}

type keySet struct {
	secret []byte
	public map[string]ed25519.PublicKey // by key id: the file name without .pem
}

// VerifierOptions configure a Verifier; at least one source is required.
type VerifierOptions struct {
	// SecretFile holds the v1 HMAC secret (upstream's
	// --authz-scoped-token-secret-file).
	SecretFile string
	// PublicKeyDir holds v2 public keys, one PEM file (PKIX, Ed25519) per
	// key, named <key id>.pem: a mounted Secret or ConfigMap, several keys
	// at once while they rotate.
	PublicKeyDir string
	Log          *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// NewVerifier loads the keys; a source that cannot be read is an error.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	if opts.SecretFile == "" && opts.PublicKeyDir == "" {
		return nil, errors.New("scoped tokens need a v1 secret file or a v2 public key directory")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	v := &Verifier{secretFile: opts.SecretFile, keyDir: opts.PublicKeyDir, log: opts.Log, now: opts.Now}
	if err := v.reload(); err != nil {
		return nil, err
	}
	return v, nil
}

// Verify checks token and returns its claims.
func (v *Verifier) Verify(token string) (Claims, error) {
	if len(token) > maxTokenLen {
		return Claims{}, ErrMalformed
	}
	ks := v.keys.Load()
	switch {
	case strings.HasPrefix(token, v1Prefix):
		if ks.secret == nil {
			return Claims{}, ErrDisabled
		}
		return verifyV1(ks.secret, token, v.now())
	case strings.HasPrefix(token, v2Prefix):
		if ks.public == nil {
			return Claims{}, ErrDisabled
		}
		return verifyV2(ks.public, token, v.now())
	}
	return Claims{}, ErrMalformed
}

// IsScoped reports whether a bearer credential has a scoped token's form,
// so that it is verified here rather than sent to the API server.
func IsScoped(token string) bool {
	return strings.HasPrefix(token, v1Prefix) || strings.HasPrefix(token, v2Prefix)
}

// Watch reloads the keys whenever their files change, until ctx ends. A
// reload that fails keeps the keys in force.
func (v *Verifier) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	for _, dir := range v.watchedDirs() {
		if err := w.Add(dir); err != nil {
			return fmt.Errorf("watch %s: %w", dir, err)
		}
	}
	// A change between the first load and the watch would be missed.
	if err := v.reload(); err != nil {
		v.log.Error("scoped token keys: reload failed; keeping the keys in force", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.Errors:
			v.log.Warn("scoped token keys: watch error", "err", err)
		case <-w.Events:
			if err := v.reload(); err != nil {
				v.log.Error("scoped token keys: reload failed; keeping the keys in force", "err", err)
			}
		}
	}
}

func (v *Verifier) watchedDirs() []string {
	var dirs []string
	if v.secretFile != "" {
		// The directory, not the file: Secret mounts swap a symlink.
		dirs = append(dirs, filepath.Dir(v.secretFile))
	}
	if v.keyDir != "" && (len(dirs) == 0 || dirs[0] != v.keyDir) {
		dirs = append(dirs, v.keyDir)
	}
	return dirs
}

func (v *Verifier) reload() error {
	ks := &keySet{}
	if v.secretFile != "" {
		data, err := os.ReadFile(v.secretFile)
		if err != nil {
			return fmt.Errorf("v1 secret: %w", err)
		}
		if ks.secret, err = NormalizeV1Secret(data); err != nil {
			return fmt.Errorf("v1 secret %s: %w", v.secretFile, err)
		}
	}
	if v.keyDir != "" {
		keys, err := readPublicKeys(v.keyDir)
		if err != nil {
			return err
		}
		ks.public = keys
	}
	old := v.keys.Swap(ks)
	if old != nil {
		v.log.Info("scoped token keys reloaded", "v2_keys", len(ks.public), "v1", ks.secret != nil)
	}
	return nil
}

// readPublicKeys reads every <key id>.pem of dir. Files that are not .pem
// are ignored (a Secret mount holds dot-directories beside its keys).
func readPublicKeys(dir string) (map[string]ed25519.PublicKey, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("v2 public keys: %w", err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, e := range entries {
		name := e.Name()
		kid, ok := strings.CutSuffix(name, ".pem")
		if !ok || strings.HasPrefix(name, ".") || kid == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("v2 public key %s: %w", name, err)
		}
		key, err := ParsePublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("v2 public key %s: %w", name, err)
		}
		keys[kid] = key
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("v2 public keys: no <key id>.pem in %s", dir)
	}
	return keys, nil
}

// ParsePublicKey reads a PEM "PUBLIC KEY" (PKIX) holding an Ed25519 key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM PUBLIC KEY")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return pub, nil
}

// ParsePrivateKey reads a PEM "PRIVATE KEY" (PKCS #8) holding an Ed25519
// key, for minting.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return priv, nil
}
