#!/usr/bin/env bash
# Installs the tools the build and the tests need, each only when it is
# missing or at another version, so running it again costs a few checks.
#
#   scripts/tools.sh [go] [browser] [bench]    (no argument: all of them)
#
#   go       stripe-mock, xcaddy and Mailpit (the SMTP server the mail tests
#            run), with `go install …@version`
#   browser  Debian's chromium and chromium-driver, for the browser test
#   bench    Debian's wrk, for `make bench`
#
# Go tools come from the Go module proxy, Debian packages from Debian's
# archive through apt-get; nothing else is downloaded.
set -euo pipefail

STRIPE_MOCK_VERSION=v0.203.0
XCADDY_VERSION=v0.4.5
MAILPIT_VERSION=v1.33.1

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

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(go browser bench)

for w in "${want[@]}"; do
	case $w in
	go)
		go_tool stripe-mock github.com/stripe/stripe-mock "$STRIPE_MOCK_VERSION"
		go_tool xcaddy github.com/caddyserver/xcaddy/cmd/xcaddy "$XCADDY_VERSION"
		go_tool mailpit github.com/axllent/mailpit "$MAILPIT_VERSION"
		;;
	browser)
		debs chromium chromium-driver
		;;
	bench)
		debs wrk
		;;
	*)
		log "unknown tool group '$w' (want go, browser or bench)"
		exit 2
		;;
	esac
done
