package images

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sandbox-router/sandbox-router/images"
)

// pulled is the image pushed to the in-process registry and pulled back
// by digest, once for the package's tests.
var pulled struct {
	once   sync.Once
	srv    *httptest.Server
	ref    name.Digest
	index  v1.ImageIndex
	images map[string]v1.Image // by platform, "linux/amd64"
	// files are, by platform, the layers' entries in order; their
	// regular files are unpacked under tmpDir/pulled/<os>_<arch>.
	files map[string][]entry
	err   error
}

// entry is a file or directory of a layer, and where a file was unpacked.
type entry struct {
	hdr  *tar.Header
	path string
}

func stopRegistry() {
	if pulled.srv != nil {
		pulled.srv.Close()
	}
}

// pull pushes the package's image to a registry on 127.0.0.1 (plain HTTP:
// go-containerregistry speaks it to loopback registries) under a tag, as
// make image-push does, and pulls the index back by the digest the push
// returned.
func pull(t *testing.T) {
	t.Helper()
	res := image(t)
	pulled.once.Do(func() {
		pulled.srv = httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		host := strings.TrimPrefix(pulled.srv.URL, "http://")
		if pulled.ref, pulled.err = images.Push(t.Context(), res.layout(), host+"/sandbox-router:e2e", authn.DefaultKeychain); pulled.err != nil {
			return
		}
		if pulled.index, pulled.err = remote.Index(pulled.ref); pulled.err != nil {
			return
		}
		m, err := pulled.index.IndexManifest()
		if err != nil {
			pulled.err = err
			return
		}
		pulled.images, pulled.files = map[string]v1.Image{}, map[string][]entry{}
		for _, desc := range m.Manifests {
			if desc.Platform == nil {
				pulled.err = fmt.Errorf("manifest %s has no platform", desc.Digest)
				return
			}
			p := desc.Platform.String()
			if pulled.images[p], pulled.err = pulled.index.Image(desc.Digest); pulled.err != nil {
				return
			}
			dir := filepath.Join(tmpDir, "pulled", desc.Platform.OS+"_"+desc.Platform.Architecture)
			if pulled.files[p], pulled.err = unpack(pulled.images[p], dir); pulled.err != nil {
				return
			}
		}
	})
	if pulled.err != nil {
		t.Fatal(pulled.err)
	}
}

func TestPushedIndex(t *testing.T) {
	pull(t)
	res := image(t)
	if pulled.ref.DigestStr() != res.digest.String() {
		t.Errorf("push returned %s, the build made %s", pulled.ref, res.digest)
	}
	if got, err := pulled.index.Digest(); err != nil || got != res.digest {
		t.Errorf("pulled index %s (%v), want %s", got, err, res.digest)
	}
	// The tag names the same index.
	desc, err := remote.Head(pulled.ref.Context().Tag("e2e"))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != res.digest {
		t.Errorf("tag e2e names %s, want %s", desc.Digest, res.digest)
	}

	want := res.annotations
	for _, k := range []string{images.AnnotationSource, images.AnnotationRevision, images.AnnotationVersion, images.AnnotationCreated} {
		if want[k] == "" {
			t.Errorf("annotation %s is missing", k)
		}
	}
	created, err := time.Parse(time.RFC3339, want[images.AnnotationCreated])
	if err != nil {
		t.Fatal(err)
	}
	m, err := pulled.index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(m.Annotations, want) {
		t.Errorf("index annotations %v, want %v", m.Annotations, want)
	}
	if got := slices.Sorted(maps.Keys(pulled.images)); !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("platforms %v", got)
	}

	for platform, img := range pulled.images {
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(m.Annotations, want) {
			t.Errorf("%s: annotations %v, want %v", platform, m.Annotations, want)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OS+"/"+cfg.Architecture != platform {
			t.Errorf("%s: config says %s/%s", platform, cfg.OS, cfg.Architecture)
		}
		c := cfg.Config
		if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/sandbox-router"}) || len(c.Cmd) > 0 || len(c.Shell) > 0 {
			t.Errorf("%s: user %q, entrypoint %q, cmd %q, shell %q", platform, c.User, c.Entrypoint, c.Cmd, c.Shell)
		}
		if !cfg.Created.Equal(created) {
			t.Errorf("%s: created %v, want %v", platform, cfg.Created, created)
		}
		checkFiles(t, platform, pulled.files[platform], created)
	}
}

// unpack reads every layer of img in order, as a runtime unpacks them,
// and writes their regular files under dir. It streams: gzip, in a
// process of its own, decompresses each blob into a file, and the files
// are copied out of it, because under the race detector Go's inflate and
// large buffers cost seconds per layer.
func unpack(img v1.Image, dir string) ([]entry, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	var out []entry
	for i, l := range layers {
		tarPath := filepath.Join(dir, fmt.Sprintf("layer-%d.tar", i))
		if err := gunzip(l, tarPath); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		entries, err := untar(tarPath, filepath.Join(dir, "rootfs"))
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		out = append(out, entries...)
	}
	return out, nil
}

// gunzip writes the layer's tar to path, decompressed by gzip -dc from
// the compressed blob (whose digest the registry client checks as it
// reads).
func gunzip(l v1.Layer, path string) error {
	blob, err := l.Compressed()
	if err != nil {
		return err
	}
	defer blob.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var stderr bytes.Buffer
	cmd := exec.Command("gzip", "-dc")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = blob, f, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("gzip -dc: %v: %s", err, stderr.Bytes())
	}
	return f.Close()
}

// untar lists a tar's entries and writes its regular files under root.
func untar(tarPath, root string) ([]entry, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []entry
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		e := entry{hdr: hdr}
		if hdr.Typeflag == tar.TypeReg {
			if !filepath.IsLocal(hdr.Name) {
				return nil, fmt.Errorf("entry %q leaves the root", hdr.Name)
			}
			e.path = filepath.Join(root, hdr.Name)
			if err := writeFile(e.path, tr); err != nil {
				return nil, err
			}
		}
		out = append(out, e)
	}
}

func writeFile(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkFiles checks a platform's layers: the files are exactly the
// account files, the CA bundle and the binary, owned by root with the
// build's mtime; nothing is a link or a device; the only executable is
// /sandbox-router, a static ELF binary of the platform.
func checkFiles(t *testing.T, platform string, entries []entry, created time.Time) {
	t.Helper()
	var names []string
	files := map[string]string{} // name -> unpacked path
	for _, e := range entries {
		hdr := e.hdr
		names = append(names, hdr.Name)
		if hdr.Uid != 0 || hdr.Gid != 0 || !hdr.ModTime.Equal(created) {
			t.Errorf("%s: %s owned by %d:%d, mtime %v", platform, hdr.Name, hdr.Uid, hdr.Gid, hdr.ModTime)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			t.Errorf("%s: %s is of type %q: only files and directories belong here", platform, hdr.Name, hdr.Typeflag)
			continue
		}
		if hdr.Mode&0o111 != 0 && hdr.Name != "sandbox-router" {
			t.Errorf("%s: %s is executable (%o)", platform, hdr.Name, hdr.Mode)
		}
		files[hdr.Name] = e.path
	}
	want := []string{"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", "sandbox-router"}
	if !slices.Equal(names, want) {
		t.Errorf("%s: files %q, want %q", platform, names, want)
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(files[name])
		if err != nil {
			t.Fatalf("%s: %s: %v", platform, name, err)
		}
		return b
	}
	if passwd, group := read("etc/passwd"), read("etc/group"); !bytes.Equal(passwd, images.Passwd()) || !bytes.Equal(group, images.Group()) {
		t.Errorf("%s: /etc/passwd %q, /etc/group %q", platform, passwd, group)
	}
	if ca, err := os.ReadFile(images.CABundlePath); err != nil || !bytes.Equal(read("etc/ssl/certs/ca-certificates.crt"), ca) {
		t.Errorf("%s: the CA bundle is not this machine's %s (%v)", platform, images.CABundlePath, err)
	}
	bin, err := elf.Open(files["sandbox-router"])
	if err != nil {
		t.Fatalf("%s: /sandbox-router: %v", platform, err)
	}
	defer bin.Close()
	machine := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}[platform]
	if bin.Machine != machine {
		t.Errorf("%s: /sandbox-router is for %v", platform, bin.Machine)
	}
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: /sandbox-router is dynamically linked (%v)", platform, p.Type)
		}
	}
}

// hostBinary is /sandbox-router of this machine's platform, unpacked from
// the pulled layers.
func hostBinary(t *testing.T) string {
	t.Helper()
	pull(t)
	platform := runtime.GOOS + "/" + runtime.GOARCH
	entries, ok := pulled.files[platform]
	if !ok {
		t.Skipf("the image has no %s", platform)
	}
	// The last one wins, as when a runtime unpacks the layers.
	var path string
	for _, e := range entries {
		if e.hdr.Name == "sandbox-router" {
			path = e.path
		}
	}
	if path == "" {
		t.Fatal("no /sandbox-router in the pulled layers")
	}
	return path
}
