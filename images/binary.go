package images

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BinaryOptions say what to compile for which platform.
type BinaryOptions struct {
	// Go is the go command; default "go" (from PATH).
	Go string
	// ModuleDir is the module's root (where go.mod is); default ".".
	ModuleDir string
	// Package is the main package, relative to ModuleDir; default
	// "./cmd/sandbox-router".
	Package string
	// Platform is the target; only linux is supported (the image has no
	// other kernel to run on).
	Platform v1.Platform
	// Out is the binary's path.
	Out string
}

// BuildBinary cross-compiles a static binary for the platform.
//
// The flags are what make the binary fit the image and the build
// reproducible: CGO_ENABLED=0 (the image has no libc), -trimpath (no path
// of this machine in the binary), -buildvcs=true (the commit and its time
// in the build info; it overrides a GOFLAGS=-buildvcs=false of the
// environment, and fails outside a git work tree instead of silently
// leaving the commit out), -ldflags=-s -w (no symbol table or DWARF: a
// smaller image; stack traces and the build info stay), and the baseline
// GOAMD64/GOARM64 levels, so that a GOAMD64=v3 of the environment cannot
// make an image that some nodes cannot run.
func BuildBinary(ctx context.Context, opts BinaryOptions) error {
	if opts.Platform.OS != "linux" {
		return fmt.Errorf("images: platform %s: only linux is supported", opts.Platform)
	}
	if opts.Out == "" {
		return errors.New("images: BinaryOptions.Out is empty")
	}
	goCmd, dir, pkg := or(opts.Go, "go"), or(opts.ModuleDir, "."), or(opts.Package, "./cmd/sandbox-router")
	out, err := filepath.Abs(opts.Out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-buildvcs=true", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	// Later entries win over the environment's.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+opts.Platform.OS, "GOARCH="+opts.Platform.Architecture,
		"GOAMD64=v1", "GOARM64=v8.0")
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("images: go build for %s: %w\n%s", opts.Platform, err, output)
	}
	return nil
}

// BinaryInfo is what a binary's build info says about the source it was
// built from.
type BinaryInfo struct {
	// Module is the main module's path.
	Module string
	// Version is the main module's version as the go command stamped it:
	// a tag, or a pseudo-version of the commit, with +dirty when the work
	// tree had changes.
	Version string
	// Revision is the commit (vcs.revision).
	Revision string
	// Time is the commit's time (vcs.time).
	Time time.Time
	// Modified says the work tree had uncommitted changes.
	Modified bool
	// GoVersion is the toolchain that built it.
	GoVersion string
}

// ReadBinaryInfo reads the build info of a Go binary of any platform. It
// is an error for the binary to carry no commit: the image's annotations
// and `sandbox-router version` would have nothing to say.
func ReadBinaryInfo(path string) (BinaryInfo, error) {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return BinaryInfo{}, fmt.Errorf("images: build info of %s: %w", path, err)
	}
	b := BinaryInfo{Module: info.Main.Path, Version: info.Main.Version, GoVersion: info.GoVersion}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			if b.Time, err = time.Parse(time.RFC3339, s.Value); err != nil {
				return BinaryInfo{}, fmt.Errorf("images: %s: vcs.time: %w", path, err)
			}
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	if b.Revision == "" || b.Time.IsZero() {
		return BinaryInfo{}, fmt.Errorf("images: %s carries no commit (built outside a git work tree, or without -buildvcs)", path)
	}
	return b, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
