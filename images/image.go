package images

import (
	"errors"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The pre-defined annotation keys of the OCI image spec this package sets.
const (
	AnnotationSource   = "org.opencontainers.image.source"
	AnnotationRevision = "org.opencontainers.image.revision"
	AnnotationVersion  = "org.opencontainers.image.version"
	AnnotationCreated  = "org.opencontainers.image.created"
)

// Metadata is what the image says about its source. Every field is part
// of the digest, so none may come from the clock or the machine.
type Metadata struct {
	// Source is the repository's URL.
	Source string
	// Revision is the commit the binary was built from.
	Revision string
	// Version is the version the binary reports.
	Version string
	// Created is the image's creation time and every file's mtime: the
	// commit's time unless SOURCE_DATE_EPOCH says otherwise.
	Created time.Time
}

// Annotations are the org.opencontainers.image.* annotations of the
// index and of each manifest.
func (m Metadata) Annotations() map[string]string {
	return map[string]string{
		AnnotationSource:   m.Source,
		AnnotationRevision: m.Revision,
		AnnotationVersion:  m.Version,
		AnnotationCreated:  m.Created.UTC().Format(time.RFC3339),
	}
}

func (m Metadata) validate() error {
	if m.Source == "" || m.Revision == "" || m.Version == "" || m.Created.IsZero() {
		return fmt.Errorf("images: incomplete metadata %+v", m)
	}
	return nil
}

// Ports the router listens on by default (HTTP, HTTPS, admin), exposed as
// the Dockerfile exposes them: documentation for `docker run -P`, nothing
// more.
var exposedPorts = []string{"8080/tcp", "8443/tcp", "9090/tcp"}

// Image is one platform's image: the base layer, then the binary layer,
// on an empty base with OCI media types. The config runs the binary as
// 65532:65532 with no shell in between.
func Image(platform v1.Platform, base, binary v1.Layer, meta Metadata) (v1.Image, error) {
	if err := meta.validate(); err != nil {
		return nil, err
	}
	created := v1.Time{Time: meta.Created.UTC()}
	ports := map[string]struct{}{}
	for _, p := range exposedPorts {
		ports[p] = struct{}{}
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	// The config before the layers: Append fills in rootfs.diff_ids and
	// the history, which ConfigFile would overwrite.
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: platform.Architecture,
		OS:           platform.OS,
		Variant:      platform.Variant,
		Created:      created,
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint:   []string{EntrypointPath},
			User:         fmt.Sprintf("%d:%d", UID, GID),
			ExposedPorts: ports,
		},
	})
	if err != nil {
		return nil, err
	}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "images: /etc/passwd, /etc/group (nonroot 65532), " + CABundlePath,
		}},
		mutate.Addendum{Layer: binary, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "images: " + EntrypointPath + " (go build -trimpath -buildvcs=true, CGO_ENABLED=0)",
		}},
	)
	if err != nil {
		return nil, err
	}
	annotated, ok := mutate.Annotations(img, meta.Annotations()).(v1.Image)
	if !ok {
		return nil, errors.New("images: annotating the image did not give an image")
	}
	return annotated, nil
}

// PlatformImage is an image and the platform it is for.
type PlatformImage struct {
	Platform v1.Platform
	Image    v1.Image
}

// Index is the multi-platform image index, in the order given (which the
// caller keeps fixed: the order is part of the digest).
func Index(images []PlatformImage, meta Metadata) (v1.ImageIndex, error) {
	if err := meta.validate(); err != nil {
		return nil, err
	}
	if len(images) == 0 {
		return nil, errors.New("images: an index of no images")
	}
	adds := make([]mutate.IndexAddendum, 0, len(images))
	for _, pi := range images {
		p := pi.Platform
		adds = append(adds, mutate.IndexAddendum{Add: pi.Image, Descriptor: v1.Descriptor{Platform: &p}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	annotated, ok := mutate.Annotations(idx, meta.Annotations()).(v1.ImageIndex)
	if !ok {
		return nil, errors.New("images: annotating the index did not give an index")
	}
	return annotated, nil
}
