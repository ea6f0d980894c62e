package images

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultPlatforms are the platforms of the image, in index order.
var DefaultPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Options configure Build.
type Options struct {
	// OutDir receives everything Build writes (see Result); required.
	OutDir string
	// Go, ModuleDir and Package say what to compile (see BinaryOptions).
	Go, ModuleDir, Package string
	// Platforms default to DefaultPlatforms.
	Platforms []v1.Platform
	// Tag names the image in the layout and the archives; default
	// "sandbox-router:dev".
	Tag string
	// CABundle is the CA bundle to copy into the image; default
	// CABundlePath of this machine (Debian's ca-certificates). Its bytes
	// are part of the digest.
	CABundle string
	// Created overrides the creation time and mtimes (SOURCE_DATE_EPOCH);
	// zero means the commit's time.
	Created time.Time
	// Source overrides the source URL; default https://<module path>.
	Source string
	// Version overrides the version; default the binary's module version.
	Version string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Result is what Build made.
type Result struct {
	// Index is the multi-platform image index and Digest its digest.
	Index  v1.ImageIndex
	Digest v1.Hash
	// Metadata is what the annotations say.
	Metadata Metadata
	// Images are the per-platform images, in index order.
	Images []BuiltImage
	// Layout is the OCI layout directory (OutDir/oci) and OCIArchive the
	// same as one tar file (OutDir/sandbox-router-oci.tar).
	Layout, OCIArchive string
}

// BuiltImage is one platform's image and the files made for it.
type BuiltImage struct {
	PlatformImage
	// Binary is the compiled binary (OutDir/bin/<os>_<arch>/sandbox-router).
	Binary string
	// DockerArchive is the per-platform docker-archive
	// (OutDir/sandbox-router-<os>-<arch>.tar).
	DockerArchive string
}

// Build compiles the binary for each platform, assembles the images and
// their index, and writes the OCI layout and the archives under OutDir.
func Build(ctx context.Context, opts Options) (*Result, error) {
	if opts.OutDir == "" {
		return nil, errors.New("images: Options.OutDir is empty")
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	platforms := opts.Platforms
	if len(platforms) == 0 {
		platforms = DefaultPlatforms
	}
	tag, err := name.NewTag(or(opts.Tag, "sandbox-router:dev"))
	if err != nil {
		return nil, fmt.Errorf("images: tag: %w", err)
	}
	caBundle, err := ReadCABundle(or(opts.CABundle, CABundlePath))
	if err != nil {
		return nil, err
	}

	res := &Result{Layout: filepath.Join(opts.OutDir, "oci"), OCIArchive: filepath.Join(opts.OutDir, "sandbox-router-oci.tar")}
	var info BinaryInfo
	for i, p := range platforms {
		bin := filepath.Join(opts.OutDir, "bin", p.OS+"_"+p.Architecture, "sandbox-router")
		start := time.Now()
		if err := BuildBinary(ctx, BinaryOptions{Go: opts.Go, ModuleDir: opts.ModuleDir, Package: opts.Package, Platform: p, Out: bin}); err != nil {
			return nil, err
		}
		logf("built %s for %s in %s", bin, p, time.Since(start).Round(time.Millisecond))
		bi, err := ReadBinaryInfo(bin)
		if err != nil {
			return nil, err
		}
		// The builds run one after the other: a commit between them would
		// give an index of two sources.
		if i == 0 {
			info = bi
		} else if bi.Revision != info.Revision || bi.Modified != info.Modified {
			return nil, fmt.Errorf("images: the work tree changed during the build (%s then %s)", info.Revision, bi.Revision)
		}
		res.Images = append(res.Images, BuiltImage{PlatformImage: PlatformImage{Platform: p}, Binary: bin,
			DockerArchive: filepath.Join(opts.OutDir, "sandbox-router-"+p.OS+"-"+p.Architecture+".tar")})
	}
	res.Metadata = Metadata{
		Source:   or(opts.Source, "https://"+info.Module),
		Revision: info.Revision,
		Version:  or(opts.Version, info.Version),
		Created:  info.Time,
	}
	if !opts.Created.IsZero() {
		res.Metadata.Created = opts.Created
	}
	if info.Modified {
		logf("warning: the work tree has uncommitted changes: the image is of %s plus those (version %s)", info.Revision, res.Metadata.Version)
	}

	mtime := res.Metadata.Created
	base, err := Layer(BaseFiles(caBundle), mtime)
	if err != nil {
		return nil, err
	}
	images := make([]PlatformImage, len(res.Images))
	for i := range res.Images {
		b := &res.Images[i]
		data, err := os.ReadFile(b.Binary)
		if err != nil {
			return nil, err
		}
		layer, err := Layer(BinaryFiles(data), mtime)
		if err != nil {
			return nil, err
		}
		if b.Image, err = Image(b.Platform, base, layer, res.Metadata); err != nil {
			return nil, err
		}
		images[i] = b.PlatformImage
	}
	if res.Index, err = Index(images, res.Metadata); err != nil {
		return nil, err
	}
	if res.Digest, err = res.Index.Digest(); err != nil {
		return nil, err
	}

	if err := WriteLayout(res.Layout, res.Index, tag); err != nil {
		return nil, err
	}
	if err := WriteOCIArchive(res.OCIArchive, res.Layout, mtime); err != nil {
		return nil, err
	}
	for _, b := range res.Images {
		if err := WriteDockerArchive(b.DockerArchive, b.Image, tag); err != nil {
			return nil, err
		}
	}
	logf("image index %s (%s), version %s, created %s", res.Digest, strings.Join(platformNames(platforms), ", "),
		res.Metadata.Version, res.Metadata.Created.UTC().Format(time.RFC3339))
	return res, nil
}

// ReadCABundle reads a PEM bundle of CA certificates and checks that Go
// can use it: an empty or broken bundle would build an image whose every
// TLS connection fails.
func ReadCABundle(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("images: CA bundle (Debian's ca-certificates package): %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("images: CA bundle %s holds no certificate", path)
	}
	return data, nil
}

func platformNames(ps []v1.Platform) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
