# Talon. The two set-up commands are `make run` and `make test`.
GO      ?= go
BIN     := bin/talon
FUZZTIME ?= 20s

.PHONY: build run test deps bench lint fmt vet tidy-check clean

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/talon

# Build, then run the daemon in the foreground on the embedded default policy,
# with its state kept in .cache/run so it touches nothing of yours.
run: build
	TALON_STATE_DIR=$${TALON_STATE_DIR:-$(CURDIR)/.cache/run} ./$(BIN) run

# Every test, including the ones against real servers (sshd, redis-server,
# etcd + kube-apiserver, monitoring plugins, systemd, Prometheus, Alertmanager).
# deps installs the Debian packages they need when missing (as root).
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./builtins/

deps:
	./hack/deps.sh
	./hack/k8s/build.sh

bench: build
	./hack/bench.sh

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	@cp go.mod /tmp/talon-go.mod.bak && cp go.sum /tmp/talon-go.sum.bak && $(GO) mod tidy && \
	  if ! git diff --quiet go.mod go.sum; then echo "go mod tidy changes go.mod/go.sum"; cp /tmp/talon-go.mod.bak go.mod; cp /tmp/talon-go.sum.bak go.sum; exit 1; fi

vet:
	$(GO) vet ./...

clean:
	rm -rf bin .cache/run
