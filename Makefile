# Switchyard: every target works on a fresh clone (see .ci/run for CI).
GO        ?= go
STATICCHECK_VERSION ?= v0.8.2
GOBIN     ?= $(shell $(GO) env GOPATH)/bin

.PHONY: all build test lint dashboard-screenshots bench bench-idle bench-fanout bench-floor bench-longpoll bench-signals bench-engines bench-soak fuzz dist

all: lint test

build:
	$(GO) build ./...

## test: every test, with the race detector (service-backed tests read
## SWITCHYARD_TEST_REDIS / SWITCHYARD_TEST_POSTGRES and skip visibly without them)
test: tests/dcrf/node_modules tests/channelstream/node_modules tests/binding/node_modules tests/dfws/node_modules js
	$(GO) build ./...
	# the binary must also build where developers run it (go run on a Mac)
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/switchyard
	$(GO) test -race -count=1 ./...
	# allocation and memory guards, which the race detector's sync.Pool and
	# shadow memory would void (skipped under -race)
	$(GO) test -count=1 -run 'TestSendsDoNotAllocate|BroadcastAllocationsDoNotGrowWithSubscribers|TestIdleConnectionCost' ./ws ./hub ./server

## the unmodified npm dcrf-client, pinned by its package-lock.json (Node 20)
tests/dcrf/node_modules: tests/dcrf/package-lock.json
	cd tests/dcrf && npm ci --no-audit --no-fund
	touch $@

## the Node ws package for the Channelstream client flows, pinned likewise
tests/channelstream/node_modules: tests/channelstream/package-lock.json
	cd tests/channelstream && npm ci --no-audit --no-fund
	touch $@

## the Node ws package for the df_websockets client flows, pinned likewise
tests/dfws/node_modules: tests/dfws/package-lock.json
	cd tests/dfws && npm ci --no-audit --no-fund
	touch $@

## the Node ws package for the channels-binding Consumer flows, pinned likewise
tests/binding/node_modules: tests/binding/package-lock.json
	cd tests/binding && npm ci --no-audit --no-fund
	touch $@

## @switchyard/client (clients/js): its build tools (esbuild, typescript) and
## test dependency (ws), pinned by its package-lock.json
clients/js/node_modules: clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund
	touch $@

## js: build the TypeScript client (dist/: ESM, CJS, .d.ts, the browser bundle);
## the Go tests of ./clients run its Node and Chromium tests against a real server
.PHONY: js js-bundle
js: clients/js/node_modules
	cd clients/js && node build.mjs

## js-bundle: rebuild clients/switchyard.js, the bundle the server embeds (commit it)
js-bundle: clients/js/node_modules
	cd clients/js && node build.mjs --update-bundle

## dist: static binaries (no cgo) for every platform in PLATFORMS, with the
## version and commit stamped in (switchyard version prints them), and
## SHA256SUMS, in DIST (dist/, beside dist/Dockerfile). Override any of them:
##   make dist PLATFORMS=linux/amd64 VERSION=v1.2.0
VERSION   ?= $(shell git describe --tags --dirty 2>/dev/null || echo 0.1.0-dev)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
DIST      ?= dist
LDFLAGS   := -s -w -X github.com/switchyardhq/switchyard.Version=$(VERSION) -X github.com/switchyardhq/switchyard.Commit=$(COMMIT)

dist:
	@mkdir -p $(DIST)
	@set -e; names=; \
	for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; [ "$$os" = windows ] && ext=.exe; \
	  name=switchyard-$$os-$$arch$$ext; \
	  echo "dist: $(DIST)/$$name ($(VERSION), $(COMMIT))"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DIST)/$$name ./cmd/switchyard; \
	  names="$$names $$name"; \
	done; \
	cd $(DIST) && if command -v sha256sum >/dev/null; then sha256sum $$names; else shasum -a 256 $$names; fi > SHA256SUMS
	@echo "dist: $(DIST)/SHA256SUMS"

## dashboard-screenshots: rerun the dashboard's Chromium test and save its
## screenshots in docs/images/dashboard (docs/dashboard.md shows them)
dashboard-screenshots: tests/dcrf/node_modules
	SWITCHYARD_DASHBOARD_SCREENSHOTS=1 $(GO) test -count=1 -run TestBrowser ./dashboard

## lint: gofmt, go vet and staticcheck
lint:
	@out=$$(gofmt -l . ); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

## bench: Go micro-benchmarks of the hot paths, then the idle-connection scenario
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(MAKE) bench-idle bench-fanout bench-longpoll bench-signals

## bench-idle: server memory per idle WebSocket connection (10,000 connections)
bench-idle:
	$(GO) build -o bin/switchyard ./cmd/switchyard
	./bin/switchyard bench idle --conns 10000

## bench-fanout: publish -> receive latency and deliveries/s with real sockets
bench-fanout:
	$(GO) build -o bin/switchyard ./cmd/switchyard
	./bin/switchyard bench fanout --conns 1000 --channels 10 --rate 100 --duration 10s
	./bin/switchyard bench fanout --conns 10000 --rate 10 --duration 10s

## bench-floor: fan-out server CPU per delivery against the floor (one write(2) per delivery)
bench-floor:
	$(GO) build -o bin/switchyard ./cmd/switchyard
	./bin/switchyard bench floor --with-fanout --conns 1000
	./bin/switchyard bench floor --with-fanout --conns 10000

## bench-longpoll: 10,000 parked Channelstream /listen polls, delivery latency
bench-longpoll:
	$(GO) build -o bin/switchyard ./cmd/switchyard
	./bin/switchyard bench longpoll --conns 10000 --rate 10 --duration 10s

## bench-signals: call -> handler -> trigger back at 1,000 calls/s (Go handler, webhook,
## sync), queue jobs/s, a trigger to a topic of 10,000 windows vs a channel publication
bench-signals:
	$(GO) build -o bin/switchyard ./cmd/switchyard
	./bin/switchyard bench signals --rate 1000 --duration 10s --callers 50 --jobs 5000 --conns 10000 --fanouts 20 --fanout-rate 10

## bench-peer: idle and fanout against Switchyard and a Django Channels peer
## (bench/peers/django-channels, from Debian's packages), one table with the ratios
.PHONY: bench-peer
bench-peer:
	dpkg -s python3-django-channels daphne >/dev/null 2>&1 || (apt-get update && apt-get install -y python3-django-channels daphne)
	$(GO) build -o bin/switchyard ./cmd/switchyard
	bench/peers/bench-peer.sh

## bench-cluster: fan-out across two processes through Redis and resources on
## PostgreSQL, side by side with one process on memory/SQLite (needs the
## SWITCHYARD_TEST_REDIS / SWITCHYARD_TEST_POSTGRES services, as .ci/run sets them)
.PHONY: bench-cluster
bench-cluster:
	bench/cluster/bench-cluster.sh

## bench-pg-writes: resource writes through one process on PostgreSQL, with the
## CPU per write of server, PostgreSQL and bench (needs SWITCHYARD_TEST_POSTGRES)
.PHONY: bench-pg-writes
bench-pg-writes:
	$(GO) build -o bin/switchyard ./cmd/switchyard
	bench/cluster/pg-writes.sh bin/switchyard

## check-nginx: the nginx configuration of docs/deployment.md in front of three
## processes on the test Redis and PostgreSQL (needs nginx: apt-get install nginx)
.PHONY: check-nginx
check-nginx: tests/dcrf/node_modules
	tests/nginx/check.sh

## bench-soak: 15,000 connections for 30 minutes with churn, publications and
## resource writes; passes when the server's RSS, goroutines and descriptors
## are flat (docs/BENCHMARKS.md)
bench-soak:
	$(GO) build -o bin/switchyard ./cmd/switchyard
	./bin/switchyard bench soak --conns 15000 --duration 30m

## bench-engines: the engine comparison behind docs/BENCHMARKS.md (its own module)
bench-engines:
	cd bench/engines && $(GO) run . -conns 10000 -rounds 3

## fuzz: every decoder's fuzz target for FUZZTIME each (make fuzz FUZZTIME=5m);
## seed corpora and past crashers are in each package's testdata/fuzz/, and
## docs/fuzzing.md records how long each has run without a crash
FUZZTIME ?= 30s
FUZZ_TARGETS = \
	./ws:FuzzFrameReader ./ws:FuzzValidPrefix ./ws:FuzzDeflate ./ws:FuzzDeflateOffer \
	./protocol/live:FuzzHandle ./protocol/live:FuzzSessionPayload ./protocol/live:FuzzChannelsPayload ./protocol/live:FuzzResourcePayload \
	./api:FuzzRESTBody ./api:FuzzRESTQuery ./api:FuzzRESTPath \
	./resource:FuzzDecode \
	./protocol/channelstream:FuzzVerify ./protocol/channelstream:FuzzAPI \
	./config:FuzzParse \
	./auth:FuzzVerify ./auth:FuzzFromRequest ./auth:FuzzVerifySignature \
	./broker/redis:FuzzDecodeMessage \
	./protocol/live:FuzzSignals ./signal:FuzzVerify \
	./protocol/binding:FuzzParseFrame ./protocol/binding:FuzzPyInt \
	./protocol/dfws:FuzzFrame ./protocol/dfws:FuzzTopic

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$fn ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done
