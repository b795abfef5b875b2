#!/usr/bin/env bash
# scripts/demo.sh (make demo): the paywall working end to end on this
# machine, offline, with no Stripe account. It builds Caddy with the plugin
# and the Stripe sandbox, starts Mailpit (an SMTP server that keeps the
# sign-in mails) and the sandbox in the background, and runs Caddy on
# examples/demo/Caddyfile. When redis-server is installed (scripts/tools.sh
# redis installs it on Debian), it also runs Redis and a second Caddy on the
# next port, sharing it: the cluster of "Several instances" in the README.
# Ctrl-C stops them all.
#
# Needs only Go. Settings, all optional:
#   DEMO_PORT       the site's port (default 8080): http://localhost:$DEMO_PORT
#   SANDBOX_PORT    the Stripe sandbox's port (default 12112)
#   CADDY_ADMIN     Caddy's admin API address (default localhost:2019)
#   DEMO_PORT2      the second instance's port (default DEMO_PORT + 1)
#   CADDY_ADMIN2    its admin API address (default localhost:2020)
#   REDIS_PORT      Redis's port (default 16379)
#   DEMO_REDIS      off: no Redis and no second instance
#   MAIL_PORT       Mailpit's web page and API port (default 8025)
#   MAIL_SMTP_PORT  Mailpit's SMTP port (default 1025)
#   CADDY_BIN       a Caddy binary with the plugin, rather than building one
#   MAILPIT_BIN     a Mailpit binary, rather than the one in Go's bin folder
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

port=${DEMO_PORT:-8080}
sandbox_port=${SANDBOX_PORT:-12112}
admin=${CADDY_ADMIN:-localhost:2019}
mail_port=${MAIL_PORT:-8025}
smtp_port=${MAIL_SMTP_PORT:-1025}
port2=${DEMO_PORT2:-$((port + 1))}
admin2=${CADDY_ADMIN2:-localhost:2020}
redis_port=${REDIS_PORT:-16379}
sandbox_url="http://127.0.0.1:$sandbox_port"
mail_url="http://127.0.0.1:$mail_port"
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

for hp in "127.0.0.1 $port" "127.0.0.1 $sandbox_port" "${admin%:*} ${admin##*:}" \
	"127.0.0.1 $mail_port" "127.0.0.1 $smtp_port" "127.0.0.1 $port2" "${admin2%:*} ${admin2##*:}" \
	"127.0.0.1 $redis_port"; do
	# shellcheck disable=SC2086
	if listening $hp; then
		die "port ${hp##* } is in use; stop what runs there, or set DEMO_PORT / SANDBOX_PORT / CADDY_ADMIN / MAIL_PORT / MAIL_SMTP_PORT / DEMO_PORT2 / CADDY_ADMIN2 / REDIS_PORT"
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

# Mailpit: $MAILPIT_BIN, else Go's bin folder or PATH, else installed into
# Go's bin folder by scripts/tools.sh, alone: the demo needs none of the
# test tools.
find_mailpit() {
	local gobin
	gobin=$(go env GOBIN)
	[ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
	if [ -x "$gobin/mailpit" ]; then
		printf '%s\n' "$gobin/mailpit"
	else
		command -v mailpit
	fi
}
mailpit=${MAILPIT_BIN:-}
if [ -n "$mailpit" ]; then
	[ -x "$mailpit" ] || die "MAILPIT_BIN=$mailpit is not an executable"
elif ! mailpit=$(find_mailpit); then
	say "demo: installing Mailpit (scripts/tools.sh mailpit)"
	scripts/tools.sh mailpit
	mailpit=$(find_mailpit) || die "Mailpit is still missing after scripts/tools.sh mailpit"
fi

# Redis, for the second instance: redis-server from PATH, else none (the
# demo then runs one instance; scripts/tools.sh redis installs it on Debian).
redis_server=
if [ "${DEMO_REDIS:-}" != off ]; then
	redis_server=$(command -v redis-server || true)
	[ -n "$redis_server" ] || say "demo: no redis-server here (scripts/tools.sh redis installs it): one instance, no cluster"
fi

# Caddy's storage (the generated cookie key) and config folders, and
# Mailpit's database, stay in .demo/, away from the user's own Caddy.
state="$root/.demo"
mkdir -p "$state/data" "$state/config" "$state/config2"
# The sandbox forgets its customers when it stops: start with an empty
# mailbox too, so that the sandbox's page shows only this run's mail.
rm -f "$state/mailpit.db" "$state/mailpit.db-shm" "$state/mailpit.db-wal"

mailpit_pid=
sandbox_pid=
caddy_pid=
caddy2_pid=
redis_pid=
stop() {
	trap - INT TERM EXIT
	for pid in $caddy_pid $caddy2_pid $sandbox_pid $mailpit_pid $redis_pid; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in $caddy_pid $caddy2_pid $sandbox_pid $mailpit_pid $redis_pid; do
		wait "$pid" 2>/dev/null || true
	done
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

# Loopback only, and nothing beyond it: no check for a newer release, no
# reverse DNS lookup of the client.
"$mailpit" \
	--listen "127.0.0.1:$mail_port" \
	--smtp "127.0.0.1:$smtp_port" \
	--database "$state/mailpit.db" \
	--disable-version-check \
	--smtp-disable-rdns &
mailpit_pid=$!

bin/stripe-sandbox \
	-addr "127.0.0.1:$sandbox_port" \
	-webhook-url "$site_url/paywall/webhook" \
	-webhook-secret "$webhook_secret" \
	-price "$price" \
	-mailpit-url "$mail_url" &
sandbox_pid=$!

# wait_listening NAME PID PORT...: wait up to ten seconds for NAME to
# listen on each PORT on loopback.
wait_listening() {
	local name=$1 pid=$2 p
	shift 2
	for p in "$@"; do
		for _ in $(seq 100); do
			listening 127.0.0.1 "$p" && break
			kill -0 "$pid" 2>/dev/null || die "$name did not start"
			sleep 0.1
		done
		listening 127.0.0.1 "$p" || die "$name is not listening on 127.0.0.1:$p"
	done
}
wait_listening Mailpit "$mailpit_pid" "$mail_port" "$smtp_port"
wait_listening "the Stripe sandbox" "$sandbox_pid" "$sandbox_port"

redis_url=off
if [ -n "$redis_server" ]; then
	# Loopback only, in memory only.
	"$redis_server" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
		--dir "$state" --logfile "$state/redis.log" &
	redis_pid=$!
	wait_listening Redis "$redis_pid" "$redis_port"
	redis_url="redis://127.0.0.1:$redis_port/0"
fi

cat <<WALK

------------------------------------------------------------------------
  Open $site_url in your browser.

  1. Open both articles: they open, as your 2 free articles (for 30
     days, in this browser). Open a third members' page (Members): the
     paywall answers 402 Payment Required, "You have read your 2 free
     articles", and sells: Premium, \$5.00 / month, read from the sandbox.
     (A private window starts with 2 new free articles.)
  2. Click Subscribe: you are on the sandbox's checkout page.
  3. Pay with 4242 4242 4242 4242 (any email): back on the page,
     which now opens, as every article does. (4000 0000 0000 0002 is
     declined; try it first, then "<- Back", to see the page explain it.)
  4. Another browser: in a private window, read the 2 free articles,
     open Members, ask for a sign-in link ("Already subscribed?") with
     the email you paid with, open the sandbox page's Mail section
     ($sandbox_url/#mail), click the link, press "Sign in":
     the article opens there too.
  5. "Manage billing" at the foot of the article: the billing portal.
     Cancel the subscription, "Return to site": 402 again, "ended".
  6. Subscribe again to get back in.
  API keys: "API keys" at the foot of an article ($site_url/paywall/keys),
     Create key, copy it, then from a terminal:
       curl -H "Authorization: Bearer pwk_…" $site_url/api/whoami
     Revoke it there: the same curl answers 401 (invalid_key).
WALK
if [ "$redis_url" != off ]; then
	cat <<WALK
  7. Several instances: a second Caddy serves http://localhost:$port2,
     sharing Redis with the first. Open an article there: you are in,
     with no Stripe read (the first instance's read is in Redis).
     Cancel in the portal of :$port (its webhook reaches :$port only):
     :$port2 answers "ended" within a second too.
     The operator's view, on each instance's admin API:
       curl $admin/paywall/stats
       curl $admin/paywall/customers/<cus_… from the sandbox page>
WALK
fi
cat <<WALK

  The sandbox's own page, with its sessions, subscriptions, webhook
  deliveries and mail: $sandbox_url
  Mailpit, which catches every mail the paywall sends: $mail_url
  Press Ctrl-C to stop.
------------------------------------------------------------------------

WALK

# run_caddy PORT ADMIN CONFIG_DIR: an instance of the demo site in the
# background. Every instance shares the storage folder: they sign cookies
# with the key the first generated there, as nodes that share storage do.
run_caddy() {
	env \
		XDG_DATA_HOME="$state/data" \
		XDG_CONFIG_HOME="$3" \
		STRIPE_SECRET_KEY="$secret_key" \
		STRIPE_WEBHOOK_SECRET="$webhook_secret" \
		STRIPE_API_URL="$sandbox_url" \
		PAYWALL_PRICE="$price" \
		DEMO_PORT="$1" \
		DEMO_SMTP="127.0.0.1:$smtp_port" \
		DEMO_REDIS="$redis_url" \
		CADDY_ADMIN="$2" \
		"$caddy" run --config examples/demo/Caddyfile --adapter caddyfile &
}
run_caddy "$port" "$admin" "$state/config"
caddy_pid=$!
if [ "$redis_url" != off ]; then
	run_caddy "$port2" "$admin2" "$state/config2"
	caddy2_pid=$!
fi

# Run until Caddy, the sandbox or Mailpit stops; Ctrl-C lands in the trap
# above. (A loop rather than `wait -n`, which macOS's bash 3.2 lacks.)
while kill -0 "$caddy_pid" 2>/dev/null && kill -0 "$sandbox_pid" 2>/dev/null &&
	kill -0 "$mailpit_pid" 2>/dev/null && { [ -z "$caddy2_pid" ] || kill -0 "$caddy2_pid" 2>/dev/null; }; do
	sleep 1 &
	wait $! || true
done
status=0
if ! kill -0 "$caddy_pid" 2>/dev/null; then
	wait "$caddy_pid" || status=$?
	say "demo: Caddy stopped (status $status)"
elif [ -n "$caddy2_pid" ] && ! kill -0 "$caddy2_pid" 2>/dev/null; then
	wait "$caddy2_pid" || status=$?
	say "demo: the second Caddy stopped (status $status)"
	[ "$status" -ne 0 ] || status=1
elif ! kill -0 "$sandbox_pid" 2>/dev/null; then
	wait "$sandbox_pid" || status=$?
	say "demo: the Stripe sandbox stopped (status $status)"
	[ "$status" -ne 0 ] || status=1
else
	wait "$mailpit_pid" || status=$?
	say "demo: Mailpit stopped (status $status)"
	[ "$status" -ne 0 ] || status=1
fi
exit "$status"
