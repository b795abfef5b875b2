#!/usr/bin/env bash
# scripts/demo.sh (make demo): the paywall working end to end on this
# machine, offline, with no Stripe account. It builds Caddy with the plugin
# and the Stripe sandbox, starts the sandbox in the background, and runs
# Caddy in the foreground on examples/demo/Caddyfile. Ctrl-C stops both.
#
# Needs only Go. Settings, all optional:
#   DEMO_PORT     the site's port (default 8080): http://localhost:$DEMO_PORT
#   SANDBOX_PORT  the Stripe sandbox's port (default 12112)
#   CADDY_ADMIN   Caddy's admin API address (default localhost:2019)
#   CADDY_BIN     a Caddy binary with the plugin, rather than building one
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

port=${DEMO_PORT:-8080}
sandbox_port=${SANDBOX_PORT:-12112}
admin=${CADDY_ADMIN:-localhost:2019}
sandbox_url="http://127.0.0.1:$sandbox_port"
site_url="http://localhost:$port"
# Demo values, known to everyone: they unlock nothing but the local sandbox.
secret_key=sk_test_demo_offline_sandbox
webhook_secret=whsec_demo_offline_sandbox_not_secret
price=price_demo_monthly

say() { printf '%s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is needed to build Caddy and the sandbox"

# listening HOST PORT: is something accepting connections there?
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

for hp in "127.0.0.1 $port" "127.0.0.1 $sandbox_port" "${admin%:*} ${admin##*:}"; do
	# shellcheck disable=SC2086
	if listening $hp; then
		die "port ${hp##* } is in use; stop what runs there, or set DEMO_PORT / SANDBOX_PORT / CADDY_ADMIN"
	fi
done

caddy=${CADDY_BIN:-}
if [ -n "$caddy" ]; then
	[ -x "$caddy" ] || die "CADDY_BIN=$caddy is not an executable"
else
	say "demo: building Caddy with the paywall plugin (bin/caddy); the first build takes a minute"
	if [ -f Makefile ] && make -n caddy >/dev/null 2>&1; then
		make --no-print-directory caddy
	else
		go build -o bin/caddy ./cmd/caddy
	fi
	caddy=bin/caddy
fi
say "demo: building the Stripe sandbox (bin/stripe-sandbox)"
go build -o bin/stripe-sandbox ./cmd/stripe-sandbox

# Caddy's storage (the generated cookie key) and config folders stay in
# .demo/, away from the user's own Caddy.
state="$root/.demo"
mkdir -p "$state/data" "$state/config"

sandbox_pid=
caddy_pid=
stop() {
	trap - INT TERM EXIT
	for pid in $caddy_pid $sandbox_pid; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in $caddy_pid $sandbox_pid; do
		wait "$pid" 2>/dev/null || true
	done
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

bin/stripe-sandbox \
	-addr "127.0.0.1:$sandbox_port" \
	-webhook-url "$site_url/paywall/webhook" \
	-webhook-secret "$webhook_secret" \
	-price "$price" &
sandbox_pid=$!

for _ in $(seq 100); do
	listening 127.0.0.1 "$sandbox_port" && break
	kill -0 "$sandbox_pid" 2>/dev/null || die "the Stripe sandbox did not start"
	sleep 0.1
done
listening 127.0.0.1 "$sandbox_port" || die "the Stripe sandbox is not listening on $sandbox_url"

cat <<EOF

------------------------------------------------------------------------
  Open $site_url in your browser.

  1. Open an article: the paywall answers 402 Payment Required.
  2. Click Subscribe: you are on the sandbox's checkout page.
  3. Pay with 4242 4242 4242 4242 (any email): back on the article,
     which now opens. (4000 0000 0000 0002 is declined; try it first,
     then "<- Back", to see the page explain it.)
  4. "Manage billing" at the foot of the article: the billing portal.
     Cancel the subscription, "Return to site": 402 again, "ended".
  5. Subscribe again to get back in.

  The sandbox's own page, with its sessions, subscriptions and
  webhook deliveries: $sandbox_url
  Press Ctrl-C to stop.
------------------------------------------------------------------------

EOF

env \
	XDG_DATA_HOME="$state/data" \
	XDG_CONFIG_HOME="$state/config" \
	STRIPE_SECRET_KEY="$secret_key" \
	STRIPE_WEBHOOK_SECRET="$webhook_secret" \
	STRIPE_API_URL="$sandbox_url" \
	PAYWALL_PRICE="$price" \
	DEMO_PORT="$port" \
	CADDY_ADMIN="$admin" \
	"$caddy" run --config examples/demo/Caddyfile --adapter caddyfile &
caddy_pid=$!

# Run until Caddy or the sandbox stops; Ctrl-C lands in the trap above.
# (A loop rather than `wait -n`, which macOS's bash 3.2 lacks.)
while kill -0 "$caddy_pid" 2>/dev/null && kill -0 "$sandbox_pid" 2>/dev/null; do
	sleep 1 &
	wait $! || true
done
status=0
if ! kill -0 "$caddy_pid" 2>/dev/null; then
	wait "$caddy_pid" || status=$?
	say "demo: Caddy stopped (status $status)"
else
	wait "$sandbox_pid" || status=$?
	say "demo: the Stripe sandbox stopped (status $status)"
	[ "$status" -ne 0 ] || status=1
fi
exit "$status"
