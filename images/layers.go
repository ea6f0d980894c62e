package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The user the router runs as: nonroot, as in the distroless images, so
// that a cluster's runAsNonRoot policy and its tooling recognise it.
const (
	UID = 65532
	GID = 65532
)

// The account files of the image. The Dockerfile copies the same files,
// so both images agree on who 65532 is.
var (
	//go:embed files/passwd
	passwd []byte
	//go:embed files/group
	group []byte
)

// Passwd returns the image's /etc/passwd: root, nobody and nonroot
// (65532), none with a login shell (the image has none).
func Passwd() []byte { return bytes.Clone(passwd) }

// Group returns the image's /etc/group, with the groups of those users.
func Group() []byte { return bytes.Clone(group) }

// EntrypointPath is where the binary lives in the image, at the root as
// in the Dockerfile, so that both images run the same command.
const EntrypointPath = "/sandbox-router"

// CABundlePath is where Debian's ca-certificates package puts the bundle,
// and the first place Go's crypto/x509 looks for one on Linux.
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// File is one entry of a layer.
type File struct {
	// Path is the absolute path inside the image.
	Path string
	// Mode is the permission bits, with fs.ModeDir for a directory.
	Mode fs.FileMode
	// Data is a regular file's content.
	Data []byte
}

// BaseFiles are the platform-independent files: the account files and the
// CA bundle. Owned by root and not writable by the router's user.
func BaseFiles(caBundle []byte) []File {
	return []File{
		{Path: "/etc/passwd", Mode: 0o644, Data: Passwd()},
		{Path: "/etc/group", Mode: 0o644, Data: Group()},
		{Path: CABundlePath, Mode: 0o644, Data: caBundle},
	}
}

// BinaryFiles is the binary, the only executable of the image.
func BinaryFiles(binary []byte) []File {
	return []File{{Path: EntrypointPath, Mode: 0o755, Data: binary}}
}

// Layer is a layer of files whose bytes depend on nothing but the files
// and mtime: entries sorted by path, each missing parent directory added
// (0755), every entry owned by 0:0 without user or group names, every
// mtime set to mtime (whole seconds, UTC), the USTAR format, and a gzip
// stream without a name or a timestamp at a fixed level. The compressed
// bytes are made here rather than by go-containerregistry, so that their
// digest does not depend on how that library compresses.
func Layer(files []File, mtime time.Time) (v1.Layer, error) {
	blob, err := LayerBlob(files, mtime)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blob)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// LayerBlob is the compressed layer Layer wraps.
func LayerBlob(files []File, mtime time.Time) ([]byte, error) {
	entries, err := withParents(files)
	if err != nil {
		return nil, err
	}
	mtime = mtime.UTC().Truncate(time.Second)
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, f := range entries {
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(f.Path, "/"),
			Mode:    int64(f.Mode.Perm()),
			ModTime: mtime,
			Format:  tar.FormatUSTAR,
		}
		if f.Mode.IsDir() {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("images: layer entry %s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gzBuf bytes.Buffer
	// A zero gzip.Header: no name, no comment, mtime 0, OS "unknown".
	zw, err := gzip.NewWriterLevel(&gzBuf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return gzBuf.Bytes(), nil
}

// withParents checks the paths and returns the entries sorted by path,
// with every parent directory not given added as 0755. Sorting by path
// puts a directory before its contents ("/etc" < "/etc/...").
func withParents(files []File) ([]File, error) {
	byPath := map[string]File{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("images: layer path %q is not a clean absolute path", f.Path)
		}
		if f.Mode&^(fs.ModeDir|fs.ModePerm) != 0 {
			return nil, fmt.Errorf("images: layer path %s: only regular files and directories (mode %v)", f.Path, f.Mode)
		}
		if f.Mode.IsDir() && len(f.Data) > 0 {
			return nil, fmt.Errorf("images: layer path %s: a directory with data", f.Path)
		}
		if _, dup := byPath[f.Path]; dup {
			return nil, fmt.Errorf("images: layer path %s given twice", f.Path)
		}
		byPath[f.Path] = f
	}
	for _, f := range files {
		for dir := path.Dir(f.Path); dir != "/"; dir = path.Dir(dir) {
			if p, ok := byPath[dir]; ok {
				if !p.Mode.IsDir() {
					return nil, fmt.Errorf("images: layer path %s: its parent %s is a file", f.Path, dir)
				}
				continue
			}
			byPath[dir] = File{Path: dir, Mode: fs.ModeDir | 0o755}
		}
	}
	out := make([]File, 0, len(byPath))
	for _, f := range byPath {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}
