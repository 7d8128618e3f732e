# Switchyard: every target works on a fresh clone (see .ci/run for CI).
GO        ?= go
STATICCHECK_VERSION ?= v0.8.2
GOBIN     ?= $(shell $(GO) env GOPATH)/bin

.PHONY: all build test lint bench bench-idle bench-fanout bench-longpoll bench-engines bench-soak fuzz

all: lint test

build:
	$(GO) build ./...

## test: every test, with the race detector (service-backed tests read
## SWITCHYARD_TEST_REDIS / SWITCHYARD_TEST_POSTGRES and skip visibly without them)
test: tests/dcrf/node_modules tests/channelstream/node_modules
	$(GO) build ./...
	$(GO) test -race -count=1 ./...

## the unmodified npm dcrf-client, pinned by its package-lock.json (Node 20)
tests/dcrf/node_modules: tests/dcrf/package-lock.json
	cd tests/dcrf && npm ci --no-audit --no-fund
	touch $@

## the Node ws package for the Channelstream client flows, pinned likewise
tests/channelstream/node_modules: tests/channelstream/package-lock.json
	cd tests/channelstream && npm ci --no-audit --no-fund
	touch $@

## lint: gofmt, go vet and staticcheck
lint:
	@out=$$(gofmt -l . ); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

## bench: Go micro-benchmarks of the hot paths, then the idle-connection scenario
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(MAKE) bench-idle bench-fanout bench-longpoll

## bench-idle: server memory per idle WebSocket connection (10,000 connections)
bench-idle:
	$(GO) build -o bin/switchyard ./cmd/switchyard
	./bin/switchyard bench idle --conns 10000

## bench-fanout: publish -> receive latency and deliveries/s with real sockets
bench-fanout:
	$(GO) build -o bin/switchyard ./cmd/switchyard
	./bin/switchyard bench fanout --conns 1000 --channels 10 --rate 100 --duration 10s
	./bin/switchyard bench fanout --conns 10000 --rate 10 --duration 10s

## bench-longpoll: 10,000 parked Channelstream /listen polls, delivery latency
bench-longpoll:
	$(GO) build -o bin/switchyard ./cmd/switchyard
	./bin/switchyard bench longpoll --conns 10000 --rate 10 --duration 10s

## bench-peer: idle and fanout against Switchyard and a Django Channels peer
## (bench/peers/django-channels, from Debian's packages), one table with the ratios
.PHONY: bench-peer
bench-peer:
	dpkg -s python3-django-channels daphne >/dev/null 2>&1 || (apt-get update && apt-get install -y python3-django-channels daphne)
	$(GO) build -o bin/switchyard ./cmd/switchyard
	bench/peers/bench-peer.sh

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
	./auth:FuzzVerify ./auth:FuzzFromRequest

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$fn ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done
