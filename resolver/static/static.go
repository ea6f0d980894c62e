package static

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/fsnotify/fsnotify"
	"go.yaml.in/yaml/v3"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// File is the YAML document the resolver reads.
type File struct {
	Sandboxes []Sandbox `yaml:"sandboxes"`
}

// Sandbox is one route.
type Sandbox struct {
	Namespace string `yaml:"namespace"`
	Name      string `yaml:"name"`
	UID       string `yaml:"uid"`
	State     string `yaml:"state"`
	PodIP     string `yaml:"podIP"`
	Protocol  string `yaml:"protocol"`
}

type nameKey struct{ namespace, name string }

type table struct {
	byName map[nameKey]resolver.Result
	byUID  map[string]resolver.Result
}

// Resolver answers lookups from the last good version of a routes file.
type Resolver struct {
	path  string
	log   *slog.Logger
	table atomic.Pointer[table]
}

// New reads path once; an unreadable or invalid file is an error.
func New(path string, log *slog.Logger) (*Resolver, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Resolver{path: path, log: log}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Lookup returns the route for key; a miss is StateUnknown.
func (r *Resolver) Lookup(key resolver.Key) resolver.Result {
	t := r.table.Load()
	if key.UID != "" {
		res, ok := t.byUID[key.UID]
		if !ok || (key.Namespace != "" && res.Namespace != key.Namespace) {
			return resolver.Result{}
		}
		return res
	}
	return t.byName[nameKey{key.Namespace, key.Name}]
}

// Synced is always true: the table is complete as soon as New returns.
func (r *Resolver) Synced() bool { return true }

// Watch re-reads the file whenever it or its directory changes, until ctx
// ends. It watches the directory, not the file, so that editors that
// replace the file and ConfigMap symlink swaps are both seen.
func (r *Resolver) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch routes: %w", err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(r.path)); err != nil {
		return fmt.Errorf("watch routes directory: %w", err)
	}
	// A change between New's read and the watch would be missed.
	if err := r.reload(); err != nil {
		r.log.Error("routes reload failed; keeping previous routes", "path", r.path, "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.Errors:
			r.log.Warn("routes watch error", "err", err)
		case <-w.Events:
			if err := r.reload(); err != nil {
				r.log.Error("routes reload failed; keeping previous routes", "path", r.path, "err", err)
			}
		}
	}
}

func (r *Resolver) reload() error {
	data, err := os.ReadFile(r.path)
	if err != nil {
		return fmt.Errorf("read routes: %w", err)
	}
	t, err := parse(data)
	if err != nil {
		return fmt.Errorf("routes %s: %w", r.path, err)
	}
	r.table.Store(t)
	r.log.Info("routes loaded", "path", r.path, "sandboxes", len(t.byName))
	return nil
}

// parse validates a routes document and builds its lookup table.
func parse(data []byte) (*table, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	t := &table{byName: make(map[nameKey]resolver.Result, len(f.Sandboxes)), byUID: make(map[string]resolver.Result)}
	for i, s := range f.Sandboxes {
		res, err := s.result()
		if err != nil {
			return nil, fmt.Errorf("sandboxes[%d] (%s/%s): %w", i, s.Namespace, s.Name, err)
		}
		k := nameKey{res.Namespace, res.Name}
		if _, dup := t.byName[k]; dup {
			return nil, fmt.Errorf("sandboxes[%d]: duplicate sandbox %s/%s", i, k.namespace, k.name)
		}
		t.byName[k] = res
		if res.UID != "" {
			if _, dup := t.byUID[res.UID]; dup {
				return nil, fmt.Errorf("sandboxes[%d]: duplicate uid %s", i, res.UID)
			}
			t.byUID[res.UID] = res
		}
	}
	return t, nil
}

func (s Sandbox) result() (resolver.Result, error) {
	res := resolver.Result{Namespace: s.Namespace, Name: s.Name, UID: s.UID}
	if res.Namespace == "" {
		res.Namespace = "default"
	}
	if s.Name == "" {
		return res, errors.New("name is required")
	}
	state := s.State
	if state == "" {
		state = "running"
	}
	var ok bool
	if res.State, ok = resolver.ParseState(state); !ok {
		return res, fmt.Errorf("unknown state %q", s.State)
	}
	if res.Protocol, ok = resolver.ParseProtocol(s.Protocol); !ok {
		return res, fmt.Errorf("unknown protocol %q (want auto, http1 or h2c)", s.Protocol)
	}
	if res.State == resolver.StateRunning {
		ip, err := netip.ParseAddr(s.PodIP)
		if err != nil {
			return res, fmt.Errorf("running sandbox needs a valid podIP: %w", err)
		}
		res.PodIP = ip.Unmap()
	}
	return res, nil
}
