# sandbox-router. Every target installs what it needs.
GO      ?= go
BIN     := bin
PKGS    := ./...
FUZZTIME ?= 10s

.PHONY: build test bench fuzz lint demo image image-push clean

build:
	$(GO) build -o $(BIN)/sandbox-router ./cmd/sandbox-router

# All tests, always with the race detector. Chromium (Debian's) drives the
# browser tests of e2e/browser; node and npm run the official TypeScript
# MCP SDK against the MCP endpoint (e2e/mcp). etcd, kube-apiserver, kubectl and helm
# are built from source first (e2e/cluster/buildtools; cached in
# e2e/tools/bin), outside any package's timeout. The end-to-end tests go first,
# alone: on a fresh machine they build etcd and kube-apiserver from source
# (several minutes on two cores), which must not starve the timing-free but
# deadline-bounded data-plane tests running beside them.
test:
	command -v chromium >/dev/null || { S=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq --no-install-recommends chromium; }
	command -v node >/dev/null && command -v npm >/dev/null || { S=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq --no-install-recommends nodejs npm; }
	$(GO) run ./e2e/cluster/buildtools
	$(GO) test -race -count=1 -timeout 45m ./e2e/...
	cd e2e/sdk && $(GO) test -race -count=1 -timeout 10m ./...
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/e2e')

# wrk/h2load against direct, nginx, httputil.ReverseProxy and the router
# (interleaved rounds, ratios), the 1 GiB memory test, go test -bench of the
# data plane and the resolver (lookups; cache memory at 100,000 sandboxes
# against whole objects), and propagation on the real API server (1,000
# pods, 10,000 other sandboxes, against a plain Pod informer), 100
# suspend/resume cycles through the activator on the real API server, the
# time to first instruction of a woken sandbox (kubelet probe period 1s
# and 10s, the fast path on and off, 100 wake-ups each), the
# cost of a cached access check, each access mode against allow-all
# on the real API server, idle WebSockets (1,000 and 9,000) and SSE
# streams held open through the router and through nginx, and the xDS
# control plane at 100,000 sandboxes against go-control-plane's caches
# (and at 10,000 on the real API server).
bench:
	bash bench/run.sh && bash bench/memory.sh && bash bench/tunnels.sh && bash bench/xds.sh
	$(GO) test -run '^$$' -bench . -benchmem ./router/
	$(GO) test -run '^$$' -bench Lookup -benchmem ./resolver/kube/
	$(GO) test -run '^$$' -bench CacheMemory -benchtime 1x -timeout 30m ./resolver/kube/
	$(GO) test -run '^$$' -bench Propagation -benchtime 1x -timeout 60m ./e2e/propagation/
	$(GO) test -run '^$$' -bench . -benchmem ./activator/
	$(GO) test -run '^$$' -bench ResumeCycle -benchtime 1x -timeout 30m ./e2e/activator/
	$(GO) test -run '^$$' -bench TFFI -benchtime 1x -timeout 30m ./e2e/activator/
	$(GO) test -run '^$$' -bench . -benchmem ./access/
	$(GO) test -run '^$$' -bench AccessModes -benchtime 1x -timeout 30m ./e2e/access/
	$(GO) test -run '^$$' -bench TableFirstPage -benchmem ./dashboard/
	$(GO) test -run '^$$' -bench BrowserTable -benchtime 1x -timeout 30m ./e2e/dashboard/

# A short run of every fuzz target.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# The local demo: a real kube-apiserver (built from source on the first
# run, several minutes), simulated sandboxes, the router binary; prints
# curl lines to try. DEMOFLAGS: e.g. '-port 8081 -admin-port 9091 -xds-port 18001', -smoke.
DEMOFLAGS ?=
# Built, not go run: go run exits 1 when Ctrl-C stops the program. The
# demo's gRPC client over xDS is built too, for the lines it prints.
demo: build
	$(GO) build -o $(BIN)/demo ./e2e/demo
	$(GO) build -o $(BIN)/xdsclient ./e2e/demo/xdsclient
	$(BIN)/demo --router $(BIN)/sandbox-router --xdsclient $(BIN)/xdsclient $(DEMOFLAGS)

# The router's OCI image, built without a Docker engine (images/): one
# index for linux/amd64 and linux/arm64, reproducible (the creation time
# and every mtime are SOURCE_DATE_EPOCH, by default the commit's time).
# Writes $(IMAGE_DIR)/oci (an OCI layout), $(IMAGE_DIR)/sandbox-router-oci.tar
# (podman load; docker load with the containerd image store) and
# $(IMAGE_DIR)/sandbox-router-linux-<arch>.tar (docker load, any store).
# The CA bundle comes from Debian's ca-certificates (installed if missing).
IMAGE_DIR ?= dist/image
IMAGE_TAG ?= sandbox-router:dev
image:
	test -f /etc/ssl/certs/ca-certificates.crt || { S=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq --no-install-recommends ca-certificates; }
	$(GO) run ./images/cmd/image build -out $(IMAGE_DIR) -tag $(IMAGE_TAG)

# Builds the image, then pushes its index to REGISTRY=host/repo[:tag]
# (:latest without a tag) with credentials from the Docker config (docker
# login, credential helpers); prints the pushed reference by digest.
image-push:
	@test -n "$(REGISTRY)" || { echo 'usage: make image-push REGISTRY=host/repo[:tag]'; exit 2; }
	$(MAKE) --no-print-directory image
	$(GO) run ./images/cmd/image push -layout $(IMAGE_DIR)/oci $(REGISTRY)

clean:
	rm -rf $(BIN)
