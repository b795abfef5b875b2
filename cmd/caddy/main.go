// Command caddy is Caddy with the standard modules and the paywall plugin:
// the same program `xcaddy build --with github.com/caddy-paywall/paywall`
// produces. The end-to-end tests build it when CADDY_BIN is not set.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// plug in Caddy modules here
	_ "github.com/caddy-paywall/paywall"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}
