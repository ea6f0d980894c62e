// Command image builds and pushes the router's OCI image without a
// Docker engine (package images); the Makefile's image and image-push
// targets run it.
//
//	image build [-out dist/image] [-tag sandbox-router:dev] [-source URL] [-version V]
//	image push [-layout dist/image/oci] host/repo[:tag]
//
// build takes the creation time from SOURCE_DATE_EPOCH when it is set,
// else from the commit, so that builds of a commit are identical.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/sandbox-router/sandbox-router/images"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

const usage = "usage: image build [flags] | image push [flags] host/repo[:tag]"

func run(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "build":
		return build(ctx, args[1:], stdout, getenv)
	case "push":
		return push(ctx, args[1:], stdout)
	}
	return errors.New(usage)
}

func build(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	out := fs.String("out", "dist/image", "output directory")
	tag := fs.String("tag", "sandbox-router:dev", "image name in the OCI layout and the archives")
	source := fs.String("source", "", "org.opencontainers.image.source (default https://<module path>)")
	version := fs.String("version", "", "org.opencontainers.image.version (default the binary's module version)")
	module := fs.String("module", ".", "the module's root directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var created time.Time
	if s := getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		created = time.Unix(sec, 0).UTC()
	}
	start := time.Now()
	res, err := images.Build(ctx, images.Options{
		OutDir: *out, ModuleDir: *module, Tag: *tag, Source: *source, Version: *version, Created: created,
		Logf: func(format string, args ...any) { fmt.Fprintf(stdout, format+"\n", args...) },
	})
	if err != nil {
		return err
	}
	for _, b := range res.Images {
		digest, err := b.Image.Digest()
		if err != nil {
			return err
		}
		compressed, uncompressed, err := sizes(b)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-12s %s  %.1f MB compressed, %.1f MB unpacked  %s\n", b.Platform, digest,
			float64(compressed)/1e6, float64(uncompressed)/1e6, b.DockerArchive)
	}
	fmt.Fprintf(stdout, "index        %s\nOCI layout   %s\nOCI archive  %s\nrevision     %s\nversion      %s\ncreated      %s\ntook         %s\n",
		res.Digest, res.Layout, res.OCIArchive, res.Metadata.Revision, res.Metadata.Version,
		res.Metadata.Created.Format(time.RFC3339), time.Since(start).Round(time.Millisecond))
	return nil
}

// sizes are the image's bytes in a registry (manifest, config and
// compressed layers) and its layers unpacked.
func sizes(b images.BuiltImage) (compressed, uncompressed int64, err error) {
	raw, err := b.Image.RawManifest()
	if err != nil {
		return 0, 0, err
	}
	cfg, err := b.Image.RawConfigFile()
	if err != nil {
		return 0, 0, err
	}
	compressed = int64(len(raw) + len(cfg))
	layers, err := b.Image.Layers()
	if err != nil {
		return 0, 0, err
	}
	for _, l := range layers {
		size, err := l.Size()
		if err != nil {
			return 0, 0, err
		}
		compressed += size
		rc, err := l.Uncompressed()
		if err != nil {
			return 0, 0, err
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return 0, 0, err
		}
		uncompressed += n
	}
	return compressed, uncompressed, nil
}

func push(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("image push", flag.ContinueOnError)
	dir := fs.String("layout", "dist/image/oci", "the OCI layout image build wrote")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("image push: give one destination, host/repo[:tag]")
	}
	ref, err := images.Push(ctx, *dir, fs.Arg(0), authn.DefaultKeychain)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, ref)
	return nil
}
