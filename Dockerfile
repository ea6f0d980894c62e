# Static, non-root image of the router. Build: make image
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/sandbox-router ./cmd/sandbox-router

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sandbox-router /sandbox-router
USER 65532:65532
EXPOSE 8080 8443 9090
ENTRYPOINT ["/sandbox-router"]
