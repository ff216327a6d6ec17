# Talon. The two set-up commands are `make run` and `make test`.
GO      ?= go
BIN     := bin/talon
# The bounded fuzz slice of `make test` counts executions, not seconds: Go
# 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when a wall-clock -fuzztime ends on a busy machine (golang/go#75804,
# fixed in Go 1.27); a count has no deadline to race. `make test FUZZTIME=5m`
# fuzzes for longer.
FUZZTIME ?= 10000x
# make install puts the binary in $(PREFIX)/bin (~/.local/bin by default,
# which the default child PATH and `talon service install` expect).
PREFIX  ?= $(HOME)/.local
# `talon version` shows this where the build carries no module version and
# no VCS stamp (a git worktree, GOFLAGS=-buildvcs=false).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS := -X github.com/talon-dev/talon/internal/cli.linkedVersion=$(VERSION)

.PHONY: build install run test soak deps bench lint fmt vet tidy-check clean

# A static binary (CGO_ENABLED=0): no libc to match on the host it is
# installed on, and 2 MiB less resident memory than a cgo build (issue 12's
# idle budget is 15 MiB). internal/e2e builds the binary it tests the same way.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/talon

# Copy, then rename: a running daemon keeps its old binary ("text file
# busy" otherwise) and `talon service install` restarts it on the new one.
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/.talon.new
	mv -f $(DESTDIR)$(PREFIX)/bin/.talon.new $(DESTDIR)$(PREFIX)/bin/talon
	@echo "installed $(DESTDIR)$(PREFIX)/bin/talon; \`talon service install\` runs it as a service"

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
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzJournalReader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10x ./engine/journal/
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzConfig$$' -fuzztime $(FUZZTIME) ./engine/config/
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzServices$$' -fuzztime $(FUZZTIME) ./engine/config/
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzLaunchctl$$' -fuzztime $(FUZZTIME) ./builtins/probe/
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzSystemctlShow$$' -fuzztime $(FUZZTIME) ./builtins/probe/
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzNagiosPerfdata$$' -fuzztime $(FUZZTIME) ./builtins/probe/
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzProcNet$$' -fuzztime $(FUZZTIME) ./engine/worker/
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzLsof$$' -fuzztime $(FUZZTIME) ./engine/worker/
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzLoadState$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10x ./engine/

# The randomized tests (every TestSoak*) for longer: `make test` runs a
# bounded number of scenarios, `make soak` runs each for SOAKTIME. A failure
# prints the seed that replays it (TALON_SOAK_SEED). Against the real binary
# (internal/e2e): kill -9 during incidents (at least 200 rounds), hanging,
# chatty and forking probes (at least 1,000 cycles) and network faults
# through a proxy; each may run past SOAKTIME to reach its minimum.
SOAKTIME ?= 10m
soak:
	TALON_SOAK=$(SOAKTIME) $(GO) test -count=1 -timeout 0 -run 'Soak' -v ./...

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
