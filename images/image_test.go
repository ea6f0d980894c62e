package images

import (
	"archive/tar"
	"encoding/json"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var testMeta = Metadata{
	Source:   "https://github.com/sandbox-router/sandbox-router",
	Revision: "686d1ebb1b827d2400396dbcca4359d584526537",
	Version:  "v0.0.0-20261206034828-686d1ebb1b82",
	Created:  testTime,
}

// testIndex assembles an index of two platforms around stand-in binaries
// (no compiler: the unit tests stay fast).
func testIndex(t *testing.T, meta Metadata) (v1.ImageIndex, []PlatformImage) {
	t.Helper()
	base, err := Layer(BaseFiles([]byte("-----BEGIN CERTIFICATE-----\n")), meta.Created)
	if err != nil {
		t.Fatal(err)
	}
	var imgs []PlatformImage
	for _, p := range DefaultPlatforms {
		bin, err := Layer(BinaryFiles([]byte("binary for "+p.Architecture)), meta.Created)
		if err != nil {
			t.Fatal(err)
		}
		img, err := Image(p, base, bin, meta)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, PlatformImage{Platform: p, Image: img})
	}
	idx, err := Index(imgs, meta)
	if err != nil {
		t.Fatal(err)
	}
	return idx, imgs
}

func TestAnnotations(t *testing.T) {
	want := map[string]string{
		"org.opencontainers.image.source":   testMeta.Source,
		"org.opencontainers.image.revision": testMeta.Revision,
		"org.opencontainers.image.version":  testMeta.Version,
		"org.opencontainers.image.created":  "2026-12-06T03:48:28Z",
	}
	if got := testMeta.Annotations(); !maps.Equal(got, want) {
		t.Errorf("annotations %v, want %v", got, want)
	}

	idx, imgs := testIndex(t, testMeta)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || !maps.Equal(im.Annotations, want) {
		t.Errorf("index: media type %s, annotations %v", im.MediaType, im.Annotations)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("%d manifests, want 2", len(im.Manifests))
	}
	var baseDigests []v1.Hash
	for i, desc := range im.Manifests {
		if desc.Platform == nil || !desc.Platform.Equals(DefaultPlatforms[i]) || desc.MediaType != types.OCIManifestSchema1 {
			t.Errorf("manifest %d: platform %v, media type %s", i, desc.Platform, desc.MediaType)
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(m.Annotations, want) {
			t.Errorf("manifest %s: annotations %v", desc.Platform, m.Annotations)
		}
		if m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 2 {
			t.Fatalf("manifest %s: config %s, %d layers", desc.Platform, m.Config.MediaType, len(m.Layers))
		}
		for _, l := range m.Layers {
			if l.MediaType != types.OCILayer {
				t.Errorf("layer media type %s", l.MediaType)
			}
		}
		baseDigests = append(baseDigests, m.Layers[0].Digest)

		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OS != "linux" || cfg.Architecture != DefaultPlatforms[i].Architecture || !cfg.Created.Equal(testTime) {
			t.Errorf("config: %s/%s created %v", cfg.OS, cfg.Architecture, cfg.Created)
		}
		if c := cfg.Config; c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/sandbox-router"}) || c.Cmd != nil || c.Shell != nil || len(c.Env) != 0 {
			t.Errorf("config: user %q entrypoint %q cmd %q shell %q env %q", c.User, c.Entrypoint, c.Cmd, c.Shell, c.Env)
		}
		if len(cfg.RootFS.DiffIDs) != 2 || len(cfg.History) != 2 {
			t.Errorf("config: %d diff IDs, %d history entries", len(cfg.RootFS.DiffIDs), len(cfg.History))
		}
		for _, h := range cfg.History {
			if !h.Created.Equal(testTime) {
				t.Errorf("history created %v", h.Created)
			}
		}
		if d, _ := imgs[i].Image.Digest(); d != desc.Digest {
			t.Errorf("index lists %s for %s, the image is %s", desc.Digest, desc.Platform, d)
		}
	}
	// The base layer is one blob for every platform (stored and pulled once).
	if baseDigests[0] != baseDigests[1] {
		t.Errorf("base layers differ: %v", baseDigests)
	}

	// Assembled again from the same inputs: the same digest. Any
	// metadata change: another.
	again, _ := testIndex(t, testMeta)
	d1, _ := idx.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("same inputs, digests %s and %s", d1, d2)
	}
	other := testMeta
	other.Revision = strings.Repeat("0", 40)
	changed, _ := testIndex(t, other)
	if d3, _ := changed.Digest(); d3 == d1 {
		t.Error("another revision, the same digest")
	}
}

func TestIncompleteMetadata(t *testing.T) {
	meta := testMeta
	meta.Revision = ""
	base, err := Layer(BaseFiles(nil), testTime)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Image(DefaultPlatforms[0], base, base, meta); err == nil {
		t.Error("an image without a revision")
	}
	if _, err := Index(nil, testMeta); err == nil {
		t.Error("an index of nothing")
	}
}

// The layout and the archives: read back, named, and byte for byte the
// same when written twice.
func TestOutputs(t *testing.T) {
	idx, imgs := testIndex(t, testMeta)
	want, _ := idx.Digest()
	tag, err := name.NewTag("sandbox-router:dev")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var archives [2][]byte
	for i := range archives {
		layout := filepath.Join(dir, "oci")
		if err := WriteLayout(layout, idx, tag); err != nil {
			t.Fatal(err)
		}
		archive := filepath.Join(dir, "oci.tar")
		if err := WriteOCIArchive(archive, layout, testTime); err != nil {
			t.Fatal(err)
		}
		if archives[i], err = os.ReadFile(archive); err != nil {
			t.Fatal(err)
		}
	}
	if string(archives[0]) != string(archives[1]) {
		t.Error("the OCI archive differs between two writes")
	}

	back, err := ReadLayout(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := back.Digest(); got != want {
		t.Errorf("layout holds %s, want %s", got, want)
	}
	var top v1.IndexManifest
	if err := json.Unmarshal(tarFile(t, filepath.Join(dir, "oci.tar"), "index.json"), &top); err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 || top.Manifests[0].Digest != want ||
		top.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "sandbox-router:dev" ||
		top.Manifests[0].Annotations["io.containerd.image.name"] != "docker.io/library/sandbox-router:dev" {
		t.Errorf("index.json %+v", top)
	}
	if got := string(tarFile(t, filepath.Join(dir, "oci.tar"), "oci-layout")); !strings.Contains(got, `"imageLayoutVersion"`) {
		t.Errorf("oci-layout %q", got)
	}

	docker := filepath.Join(dir, "amd64.tar")
	if err := WriteDockerArchive(docker, imgs[0].Image, tag); err != nil {
		t.Fatal(err)
	}
	var manifest []struct {
		Config           string
		RepoTags, Layers []string
	}
	if err := json.Unmarshal(tarFile(t, docker, "manifest.json"), &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || !slices.Equal(manifest[0].RepoTags, []string{"sandbox-router:dev"}) || len(manifest[0].Layers) != 2 {
		t.Errorf("manifest.json %+v", manifest)
	}
}

// tarFile returns the content of one file of a tar.
func tarFile(t *testing.T, archive, file string) []byte {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s in %s: %v", file, archive, err)
		}
		if hdr.Name == file {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// A test binary carries build info but no commit (go test does not stamp
// one): ReadBinaryInfo says so instead of returning empty annotations.
func TestReadBinaryInfoWithoutCommit(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadBinaryInfo(exe); err == nil || !strings.Contains(err.Error(), "carries no commit") {
		t.Errorf("err %v", err)
	}
	if _, err := ReadBinaryInfo(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("no error for a missing file")
	}
}
