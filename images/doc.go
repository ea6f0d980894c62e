// Package images builds the router's OCI image without a Docker engine,
// reproducibly: the same commit, Go toolchain and CA bundle give the same
// image index digest on any machine, so a digest can be checked by
// rebuilding it.
//
// The image is one index with a linux/amd64 and a linux/arm64 manifest.
// Each image is two layers on an empty base, no distro and no shell:
//   - the base layer (the same blob on both platforms): /etc/passwd and
//     /etc/group with the non-root user 65532 (nonroot) the router runs
//     as, and Debian's CA bundle at /etc/ssl/certs/ca-certificates.crt,
//     where Go's crypto/x509 looks first;
//   - the binary layer: /sandbox-router, static (CGO_ENABLED=0), built
//     with -trimpath and with the commit stamped (-buildvcs=true), so that
//     `sandbox-router version` names it.
//
// Files by concern:
//   - binary.go: the cross-compiled binary and what its build info says
//     (module version, commit, commit time), which is where the image's
//     annotations come from;
//   - layers.go: deterministic layers (sorted entries, one fixed mtime,
//     owner 0:0, fixed modes, a gzip stream without a timestamp);
//   - image.go: the config, the per-platform images and the index, with
//     the org.opencontainers.image.* annotations;
//   - output.go: the OCI layout directory, the archives `docker load` and
//     `podman load` take, and the push to a registry;
//   - build.go: Build, which runs the steps above in order.
//
// The Dockerfile at the repository root builds an equivalent image for
// those who have Docker; it copies /etc/passwd and /etc/group from
// images/files, the files this package embeds.
//
// This package is a build tool: nothing in the router imports it, and it
// must not reach for anything the image does not contain at build time
// (no base image is pulled, no network is used except by Push).
package images
