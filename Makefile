# Build and test the paywall plugin.
#
#   make tools   install stripe-mock, xcaddy, Mailpit, staticcheck, chromium, wrk,
#                redis-server
#                (only what is missing)
#   make caddy   build bin/caddy with the plugin, the operator's way (xcaddy)
#   make test    everything CI checks: gofmt, go vet, staticcheck, go test -race,
#                in this module and in e2e/ (the browser test's own module)
#   make fuzz    run each fuzz target for FUZZTIME (default 30s)
#   make demo    scripts/demo.sh
#   make bench   scripts/bench.sh
#   make clean   remove what the build made
#
# `make test` installs what it needs first; a fresh machine needs only Go.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

GO ?= go
MODULE := github.com/caddy-paywall/paywall
GOBIN := $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)
XCADDY := $(GOBIN)/xcaddy
STRIPE_MOCK := $(GOBIN)/stripe-mock
STATICCHECK := $(GOBIN)/staticcheck
# The nested module of the browser test: chromedp stays out of the plugin's
# requirements.
E2E := e2e
# The Caddy that bin/caddy is built on: the one go.mod requires.
CADDY_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)

# How bin/caddy is built: xcaddy (the operator's way) or go (go build ./cmd/caddy).
CADDY_BUILD ?= xcaddy

# go test's timeout for the whole run; the suite takes a few minutes.
TEST_TIMEOUT ?= 20m
FUZZTIME ?= 30s
FUZZ_TARGETS := FuzzCookieVerify FuzzCookieIdentify FuzzSafeReturn FuzzSigninToken

# Everything that goes into bin/caddy except tests.
CADDY_SOURCES := $(filter-out %_test.go,$(wildcard *.go)) $(wildcard cmd/caddy/*.go) go.mod go.sum \
	$(wildcard templates/*)

.PHONY: tools tools-go tools-browser tools-bench tools-redis caddy test lint vet staticcheck fuzz demo bench clean

tools:
	scripts/tools.sh go browser bench redis

tools-go:
	scripts/tools.sh go

tools-browser:
	scripts/tools.sh browser

tools-bench:
	scripts/tools.sh bench

tools-redis:
	scripts/tools.sh redis

caddy: bin/caddy

# The module is not published, and the Go module proxy refuses it with a 403,
# which GOPROXY's "," does not fall through on; "|" falls through on any
# error, and "off" then ends the lookup, so the go command takes the local
# copy that xcaddy's --with <module>=. writes into its build's go.mod as a
# replacement. Everything else still comes from the proxy.
# The check after the build lets grep read the whole list: grep -q may stop
# early, and list-modules, killed by SIGPIPE, would fail the pipeline
# (pipefail) at random; a binary that fails it is removed.
bin/caddy: $(CADDY_SOURCES)
	@mkdir -p bin
ifeq ($(CADDY_BUILD),go)
	$(GO) build -o $@ ./cmd/caddy
else
	@[ -x "$(XCADDY)" ] || scripts/tools.sh xcaddy
	GOPROXY="$$($(GO) env GOPROXY | cut -d, -f1)|off" \
		$(XCADDY) build $(CADDY_VERSION) --output $@ --with $(MODULE)=.
endif
	@$@ list-modules | grep -x 'http.handlers.paywall' >/dev/null || { echo "$@ lacks http.handlers.paywall" >&2; rm -f $@; exit 1; }
	@touch $@

test: export CADDY_BIN := $(CURDIR)/bin/caddy
test: export STRIPE_MOCK_BIN := $(STRIPE_MOCK)
test: export MAILPIT_BIN := $(GOBIN)/mailpit
test: tools-go tools-browser tools-redis bin/caddy lint vet staticcheck
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...
	# -count=1: the browser test runs bin/caddy, which go test's cache
	# cannot see (e2e does not import the plugin's package).
	cd $(E2E) && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# gofmt -l . covers e2e/ too; go vet and staticcheck stop at a module's
# edge, so they run in each.
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt:" >&2; echo "$$out" >&2; exit 1; fi

vet:
	$(GO) vet ./...
	cd $(E2E) && $(GO) vet ./...

staticcheck:
	@[ -x "$(STATICCHECK)" ] || scripts/tools.sh staticcheck
	$(STATICCHECK) ./...
	cd $(E2E) && $(STATICCHECK) ./...

# Seeds run in `make test`; this explores further, FUZZTIME per target.
fuzz:
	@for f in $(FUZZ_TARGETS); do \
		echo "fuzz $$f for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) . ; \
	done

demo: bin/caddy
	@if [ -x scripts/demo.sh ]; then CADDY_BIN=$(CURDIR)/bin/caddy scripts/demo.sh; else echo "make demo: not yet (scripts/demo.sh is missing)"; fi

bench: tools-bench bin/caddy
	@if [ -x scripts/bench.sh ]; then CADDY_BIN=$(CURDIR)/bin/caddy scripts/bench.sh; else echo "make bench: not yet (scripts/bench.sh is missing)"; fi

clean:
	rm -rf bin
	$(GO) clean -testcache
