# The router's image for those with Docker. `make image` (package images)
# builds the same image without a Docker engine, file for file: a static
# binary at /sandbox-router, Debian's CA bundle, /etc/passwd and /etc/group
# with the user 65532 (nonroot), no shell, nothing else. The digests differ
# (other tar and gzip bytes and times); files, user and entrypoint do not.
# Needs BuildKit (Docker's default builder since 23.0) and the .git of a
# work tree in the context:
#   docker build -t sandbox-router:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t host/repo:tag --push .

# The build stage runs on the builder's own platform and cross-compiles
# (no emulation): TARGETOS/TARGETARCH come from --platform.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (the image has no libc), no paths of the build machine, no symbol
# table; the commit is stamped from .git (kept in the build context, see
# .dockerignore) so that `sandbox-router version` names it. The baseline
# GOAMD64/GOARM64 levels run on every node of the architecture.
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOAMD64=v1 GOARM64=v8.0 \
    go build -trimpath -buildvcs=true -ldflags="-s -w" -o /out/sandbox-router ./cmd/sandbox-router

# Nothing from a distro: no shell, no package manager.
FROM scratch
COPY --from=build --chmod=0644 /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chmod=0644 images/files/passwd images/files/group /etc/
COPY --from=build --chmod=0755 /out/sandbox-router /sandbox-router
USER 65532:65532
EXPOSE 8080 8443 9090
ENTRYPOINT ["/sandbox-router"]
