package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The annotations by which loaders name an image of an OCI layout:
// containerd (and Docker with the containerd image store) reads the
// fully qualified name, podman and skopeo the OCI one.
const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

// WriteLayout writes idx as an OCI image layout in dir, replacing what
// was there (layout.Write appends to an existing index.json, which would
// leave earlier builds' images in it). Its index.json holds one
// descriptor, of the multi-platform index, named tag.
func WriteLayout(dir string, idx v1.ImageIndex, tag name.Tag) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	top := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: idx, Descriptor: v1.Descriptor{
		Annotations: map[string]string{annotationRefName: tag.String(), annotationContainerdName: qualifiedName(tag)},
	}})
	if _, err := layout.Write(dir, top); err != nil {
		return fmt.Errorf("images: OCI layout %s: %w", dir, err)
	}
	return nil
}

// qualifiedName is the name as containerd spells it:
// docker.io/library/sandbox-router:dev for sandbox-router:dev.
func qualifiedName(tag name.Tag) string {
	registry := tag.RegistryStr()
	if registry == name.DefaultRegistry {
		registry = "docker.io"
	}
	return registry + "/" + tag.RepositoryStr() + ":" + tag.TagStr()
}

// ReadLayout returns the multi-platform index of a layout WriteLayout
// wrote.
func ReadLayout(dir string) (v1.ImageIndex, error) {
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("images: OCI layout %s: %w", dir, err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 || m.Manifests[0].MediaType != types.OCIImageIndex {
		return nil, fmt.Errorf("images: OCI layout %s: index.json should hold one image index", dir)
	}
	return top.ImageIndex(m.Manifests[0].Digest)
}

// WriteOCIArchive writes the layout in dir as one tar file (an
// "oci-archive"): what `podman load`, `skopeo copy oci-archive:` and
// Docker with the containerd image store (`docker load`, Docker 25 and
// later) take, with both platforms and the annotations. Its bytes depend
// only on the layout: entries sorted, every mtime mtime, owner 0:0.
func WriteOCIArchive(path, dir string, mtime time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return fmt.Errorf("images: %s is neither a file nor a directory", p)
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(names)
	return writeFileAtomic(path, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for _, p := range names {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			info, err := os.Stat(p)
			if err != nil {
				return err
			}
			hdr := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: mtime.UTC().Truncate(time.Second), Format: tar.FormatUSTAR, Typeflag: tar.TypeReg}
			if info.IsDir() {
				hdr.Name, hdr.Mode, hdr.Typeflag = hdr.Name+"/", 0o755, tar.TypeDir
			} else {
				hdr.Size = info.Size()
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if !info.IsDir() {
				if err := copyFile(tw, p); err != nil {
					return err
				}
			}
		}
		return tw.Close()
	})
}

// WriteDockerArchive writes one platform's image as a "docker-archive"
// (manifest.json with RepoTags), tagged tag: what every `docker load`
// takes, including Docker's classic image store, which reads
// manifest.json only and would load every platform of a multi-platform
// archive under the same tag. One archive per platform avoids that.
func WriteDockerArchive(path string, img v1.Image, tag name.Tag) error {
	return writeFileAtomic(path, func(w io.Writer) error { return tarball.Write(tag, img, w) })
}

// Push pushes the multi-platform index of the layout in dir to ref
// (host/repo[:tag], :latest when no tag is given), authenticating as
// keychain says (authn.DefaultKeychain: the Docker config and its
// credential helpers). It returns the pushed index's reference by digest.
func Push(ctx context.Context, dir, ref string, keychain authn.Keychain) (name.Digest, error) {
	to, err := name.ParseReference(ref)
	if err != nil {
		return name.Digest{}, fmt.Errorf("images: push: %w", err)
	}
	if _, ok := to.(name.Digest); ok {
		return name.Digest{}, errors.New("images: push: give a tag, not a digest (the digest is the index's)")
	}
	idx, err := ReadLayout(dir)
	if err != nil {
		return name.Digest{}, err
	}
	digest, err := idx.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	if err := remote.WriteIndex(to, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain)); err != nil {
		return name.Digest{}, fmt.Errorf("images: push to %s: %w", to, err)
	}
	return to.Context().Digest(digest.String()), nil
}

// writeFileAtomic writes path through a temporary file renamed into
// place, so a failed write leaves no truncated archive behind.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("images: %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
