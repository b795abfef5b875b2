#!/usr/bin/env bash
# Installs the tools the build and the tests need, each only when it is
# missing or at another version, so running it again costs a few checks.
#
#   scripts/tools.sh [go] [browser] [bench] [redis] [TOOL…]   (no argument: all groups)
#
#   go       every Go tool below, with `go install …@version`:
#     xcaddy       builds bin/caddy (make caddy, make demo)
#     mailpit      the SMTP server the mail tests and make demo run
#     stripe-mock  Stripe's API mock, for the tests of every Stripe call
#     staticcheck  the linter make test runs
#   browser  Debian's chromium and chromium-driver, for the browser test
#   bench    Debian's wrk, for `make bench`
#   redis    Debian's redis-server (redis-server and redis-cli), which the
#            tests run through internal/redisrun
#
# A Go tool may also be named alone (scripts/tools.sh xcaddy mailpit), so
# that the demo installs only what it runs.
#
# Go tools come from the Go module proxy, Debian packages from Debian's
# archive through apt-get; nothing else is downloaded.
set -euo pipefail

STRIPE_MOCK_VERSION=v0.203.0
XCADDY_VERSION=v0.4.5
MAILPIT_VERSION=v1.33.1
STATICCHECK_VERSION=v0.8.2

GO=${GO:-go}
gobin=$("$GO" env GOBIN)
[ -n "$gobin" ] || gobin="$("$GO" env GOPATH)/bin"

log() { printf 'tools: %s\n' "$*" >&2; }

# go_tool BINARY PACKAGE VERSION: go install PACKAGE@VERSION unless
# $gobin/BINARY is already that module at that version.
go_tool() {
	local bin=$1 pkg=$2 version=$3
	if [ -x "$gobin/$bin" ] && "$GO" version -m "$gobin/$bin" 2>/dev/null | awk '$1 == "mod" { print $3 }' | grep -qx -- "$version"; then
		log "$bin $version already in $gobin"
		return
	fi
	log "go install $pkg@$version"
	"$GO" install "$pkg@$version"
}

# debs PACKAGE...: apt-get install the packages that are not installed yet.
debs() {
	local missing=() p
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	if [ ${#missing[@]} -eq 0 ]; then
		log "Debian packages already installed: $*"
		return
	fi
	if ! command -v apt-get >/dev/null; then
		log "missing ${missing[*]} and no apt-get to install them with"
		return 1
	fi
	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		sudo=(sudo)
	fi
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -q
	"${sudo[@]}" apt-get install -y -q "${missing[@]}"
}

# The Go tools, by name.
GO_TOOLS=(stripe-mock xcaddy mailpit staticcheck)
named_go_tool() {
	case $1 in
	stripe-mock) go_tool stripe-mock github.com/stripe/stripe-mock "$STRIPE_MOCK_VERSION" ;;
	xcaddy) go_tool xcaddy github.com/caddyserver/xcaddy/cmd/xcaddy "$XCADDY_VERSION" ;;
	mailpit) go_tool mailpit github.com/axllent/mailpit "$MAILPIT_VERSION" ;;
	staticcheck) go_tool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION" ;;
	esac
}

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(go browser bench redis)

for w in "${want[@]}"; do
	case $w in
	go)
		for t in "${GO_TOOLS[@]}"; do
			named_go_tool "$t"
		done
		;;
	stripe-mock | xcaddy | mailpit | staticcheck)
		named_go_tool "$w"
		;;
	browser)
		debs chromium chromium-driver
		;;
	bench)
		debs wrk
		;;
	redis)
		debs redis-server
		;;
	*)
		log "unknown tool '$w' (want go, browser, bench, redis, stripe-mock, xcaddy, mailpit or staticcheck)"
		exit 2
		;;
	esac
done
