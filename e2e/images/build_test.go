package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sandbox-router/sandbox-router/images"
)

// buildTimeout bounds one image build: with a cold Go cache it compiles
// the router and the standard library for two platforms (about 8 minutes
// each on two cores).
const buildTimeout = 30 * time.Minute

// tmpDir holds what the package's tests build; TestMain removes it.
var tmpDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
	stopRegistry()
	os.Exit(code)
}

// build is what one run of `image build` (the command make image runs)
// wrote, read back from its output directory.
type build struct {
	dir         string
	index       v1.ImageIndex
	digest      v1.Hash
	annotations map[string]string
	output      string // what the command printed
	took        time.Duration
}

// The paths make image documents, under the output directory.
func (b *build) layout() string     { return filepath.Join(b.dir, "oci") }
func (b *build) ociArchive() string { return filepath.Join(b.dir, "sandbox-router-oci.tar") }
func (b *build) dockerArchive(p v1.Platform) string {
	return filepath.Join(b.dir, "sandbox-router-"+p.OS+"-"+p.Architecture+".tar")
}
func (b *build) binary(p v1.Platform) string {
	return filepath.Join(b.dir, "bin", p.OS+"_"+p.Architecture, "sandbox-router")
}

// runBuild runs the command as make image does, in its own process: this
// test binary runs with the race detector, under which compressing and
// hashing the layers takes minutes instead of seconds.
func runBuild(ctx context.Context, t *testing.T, dir string) (*build, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "run", "./images/cmd/image", "build", "-out", dir)
	cmd.Dir = moduleDir(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("image build: %v\n%s", err, out)
	}
	b := &build{dir: dir, output: string(out), took: time.Since(start)}
	if b.index, err = images.ReadLayout(b.layout()); err != nil {
		return nil, err
	}
	if b.digest, err = b.index.Digest(); err != nil {
		return nil, err
	}
	m, err := b.index.IndexManifest()
	if err != nil {
		return nil, err
	}
	b.annotations = m.Annotations
	return b, nil
}

// built is the image built once for the package's tests.
var built struct {
	once sync.Once
	b    *build
	err  error
}

// image returns the package's image, building it on first use.
func image(t *testing.T) *build {
	t.Helper()
	if testing.Short() {
		t.Skip("images: the cross-compiled image build is skipped in -short mode")
	}
	built.once.Do(func() {
		if tmpDir, built.err = os.MkdirTemp("", "sandbox-router-images-e2e-"); built.err == nil {
			built.b, built.err = runBuild(context.Background(), t, filepath.Join(tmpDir, "build"))
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.b
}

// moduleDir is the repository's root, from this package's directory (go
// test runs a package's tests there).
func moduleDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// git runs git in the repository and returns its output, trimmed.
func git(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = moduleDir(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// Two builds of the same commit: the same index, layout, archives and
// binaries, byte for byte.
func TestReproducible(t *testing.T) {
	first := image(t)
	t.Logf("first build: %s\n%s", first.took.Round(time.Millisecond), first.output)
	second, err := runBuild(t.Context(), t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second build: %s; index %s", second.took.Round(time.Millisecond), second.digest)

	if first.digest != second.digest {
		t.Errorf("index digests differ: %s and %s", first.digest, second.digest)
	}
	if !maps.Equal(first.annotations, second.annotations) {
		t.Errorf("annotations differ: %v and %v", first.annotations, second.annotations)
	}
	for _, p := range images.DefaultPlatforms {
		same(t, first.binary(p), second.binary(p))
		same(t, first.dockerArchive(p), second.dockerArchive(p))
	}
	same(t, first.ociArchive(), second.ociArchive())
	same(t, filepath.Join(first.layout(), "index.json"), filepath.Join(second.layout(), "index.json"))
}

// What the annotations say: the commit checked out, and its time (unless
// SOURCE_DATE_EPOCH sets another).
func TestAnnotations(t *testing.T) {
	b := image(t)
	if got, want := b.annotations[images.AnnotationRevision], git(t, "rev-parse", "HEAD"); got != want {
		t.Errorf("revision %s, HEAD is %s", got, want)
	}
	if got := b.annotations[images.AnnotationSource]; got != "https://github.com/sandbox-router/sandbox-router" {
		t.Errorf("source %s", got)
	}
	if v := b.annotations[images.AnnotationVersion]; !strings.HasPrefix(v, "v") {
		t.Errorf("version %q", v)
	}
	created, err := time.Parse(time.RFC3339, b.annotations[images.AnnotationCreated])
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("SOURCE_DATE_EPOCH") == "" {
		committed, err := time.Parse(time.RFC3339, git(t, "log", "-1", "--format=%cI"))
		if err != nil {
			t.Fatal(err)
		}
		if !created.Equal(committed) {
			t.Errorf("created %v, the commit's time is %v", created, committed)
		}
	}
}

// same fails the test when two files differ.
func same(t *testing.T, a, b string) {
	t.Helper()
	if ha, hb := fileSHA256(t, a), fileSHA256(t, b); ha != hb {
		t.Errorf("%s and %s differ (sha256 %s, %s)", a, b, ha, hb)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// The archives hold what was built, as loaders read them: the OCI archive
// unpacked is a layout of the index; each docker-archive is its
// platform's config and layers under the tag.
func TestArchives(t *testing.T) {
	b := image(t)
	dir := t.TempDir()
	untar := exec.Command("tar", "-xf", b.ociArchive(), "-C", dir)
	if out, err := untar.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	idx, err := images.ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := idx.Digest(); got != b.digest {
		t.Errorf("the OCI archive holds %s, the layout %s", got, b.digest)
	}
	if _, err := layout.FromPath(dir); err != nil {
		t.Error(err)
	}

	tag, err := name.NewTag("sandbox-router:dev")
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, desc := range m.Manifests {
		built, err := b.index.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		archive := b.dockerArchive(*desc.Platform)
		img, err := tarball.ImageFromPath(archive, &tag)
		if err != nil {
			t.Fatalf("%s: %v", archive, err)
		}
		wantCfg, _ := built.ConfigName()
		if got, _ := img.ConfigName(); got != wantCfg {
			t.Errorf("%s: config %s, want %s", archive, got, wantCfg)
		}
		want, _ := built.Layers()
		got, err := img.Layers()
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: %d layers (%v), want %d", archive, len(got), err, len(want))
		}
		for i := range want {
			dw, _ := want[i].Digest()
			dg, _ := got[i].Digest()
			if dw != dg {
				t.Errorf("%s: layer %d is %s, want %s", archive, i, dg, dw)
			}
		}
	}
}
