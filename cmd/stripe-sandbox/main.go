// Command stripe-sandbox runs the offline Stripe stand-in (package
// internal/stripefake) for demos: the API subset the paywall uses, hosted
// checkout and billing-portal pages, and signed webhooks to one endpoint.
//
//	go run ./cmd/stripe-sandbox -webhook-url http://localhost:8080/paywall/webhook -webhook-secret whsec_demo
//
// With -mailpit-url its index page also lists the mail a Mailpit instance
// caught, such as sign-in links, as clickable links.
//
// Every flag can also be set through the environment variable shown in -help.
// It listens on loopback only and stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "stripe-sandbox:", err)
		os.Exit(2)
	}
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// checkMailpitURL accepts "" or an absolute http(s) URL.
func checkMailpitURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-mailpit-url %q: want an http or https URL such as http://127.0.0.1:8025", raw)
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stripe-sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", env("STRIPE_SANDBOX_ADDR", stripefake.DefaultAddr), "loopback `host:port` to listen on (env STRIPE_SANDBOX_ADDR)")
	publicURL := fs.String("public-url", env("STRIPE_SANDBOX_PUBLIC_URL", ""), "base `URL` written into checkout/portal links; default http://<addr> (env STRIPE_SANDBOX_PUBLIC_URL)")
	whURL := fs.String("webhook-url", env("STRIPE_SANDBOX_WEBHOOK_URL", ""), "webhook endpoint `URL`, e.g. http://localhost:8080/paywall/webhook (env STRIPE_SANDBOX_WEBHOOK_URL)")
	whSecret := fs.String("webhook-secret", env("STRIPE_SANDBOX_WEBHOOK_SECRET", ""), "webhook signing `secret` whsec_…; generated and printed when empty (env STRIPE_SANDBOX_WEBHOOK_SECRET)")
	priceID := fs.String("price", env("STRIPE_SANDBOX_PRICE", stripefake.DefaultPrice.ID), "price `id` (env STRIPE_SANDBOX_PRICE)")
	product := fs.String("product-name", env("STRIPE_SANDBOX_PRODUCT_NAME", stripefake.DefaultPrice.ProductName), "product `name` shown on checkout (env STRIPE_SANDBOX_PRODUCT_NAME)")
	amountDef, _ := strconv.ParseInt(env("STRIPE_SANDBOX_AMOUNT", strconv.FormatInt(stripefake.DefaultPrice.UnitAmount, 10)), 10, 64)
	amount := fs.Int64("amount", amountDef, "price in minor units, e.g. 500 = $5.00 (env STRIPE_SANDBOX_AMOUNT)")
	currency := fs.String("currency", env("STRIPE_SANDBOX_CURRENCY", stripefake.DefaultPrice.Currency), "currency (env STRIPE_SANDBOX_CURRENCY)")
	interval := fs.String("interval", env("STRIPE_SANDBOX_INTERVAL", stripefake.DefaultPrice.Interval), "day, week, month or year (env STRIPE_SANDBOX_INTERVAL)")
	apiVersion := fs.String("api-version", env("STRIPE_SANDBOX_API_VERSION", stripefake.DefaultAPIVersion), "api_version stamped on webhook events (env STRIPE_SANDBOX_API_VERSION)")
	mailpitURL := fs.String("mailpit-url", env("STRIPE_SANDBOX_MAILPIT_URL", ""), "Mailpit `URL`, e.g. http://127.0.0.1:8025, whose mail the index page lists (env STRIPE_SANDBOX_MAILPIT_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %v", *addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-addr %q: the sandbox listens on loopback only (127.0.0.1, ::1 or localhost)", *addr)
	}
	switch *interval {
	case "day", "week", "month", "year":
	default:
		return fmt.Errorf("-interval %q: want day, week, month or year", *interval)
	}
	if *amount < 0 {
		return fmt.Errorf("-amount %d: must not be negative", *amount)
	}
	if err := checkMailpitURL(*mailpitURL); err != nil {
		return err
	}

	logger := log.New(stderr, "stripe-sandbox: ", log.LstdFlags)
	price := stripefake.DefaultPrice
	if *priceID != price.ID {
		price.Product = "" // derived from the price id
	}
	price.ID, price.ProductName, price.UnitAmount, price.Currency, price.Interval = *priceID, *product, *amount, *currency, *interval
	srv := stripefake.New(stripefake.Options{
		Addr:       *addr,
		BaseURL:    *publicURL,
		APIVersion: *apiVersion,
		Prices:     []stripefake.Price{price},
		Logf:       logger.Printf,
		MailpitURL: *mailpitURL,
		OnDelivery: func(d stripefake.Delivery) {
			if d.OK {
				logger.Printf("webhook %s %s → %d", d.Type, d.EventID, d.StatusCode)
			}
		},
	})
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()

	secret := *whSecret
	if *whURL != "" {
		if secret == "" {
			secret = stripefake.NewWebhookSecret()
		}
		srv.AddWebhookEndpoint(*whURL, secret)
	}

	p := srv.Prices()[0]
	fmt.Fprintf(stdout, "%s\n", stripefake.Banner)
	fmt.Fprintf(stdout, "  offline stand-in for the Stripe API, Checkout, billing portal and webhooks\n")
	fmt.Fprintf(stdout, "  listening on   %s (API base URL; any sk_test_… key works)\n", srv.URL())
	fmt.Fprintf(stdout, "  price          %s (%s, product %s)\n", p.ID, p.Label(), p.Product)
	if *whURL != "" {
		fmt.Fprintf(stdout, "  webhooks to    %s\n", *whURL)
		fmt.Fprintf(stdout, "  signing secret %s\n", secret)
	} else {
		fmt.Fprintf(stdout, "  webhooks       none (set -webhook-url)\n")
	}
	if *mailpitURL != "" {
		fmt.Fprintf(stdout, "  mail           %s/ lists the mail caught by Mailpit at %s\n", srv.URL(), *mailpitURL)
	}
	fmt.Fprintf(stdout, "  test cards     4242 4242 4242 4242 succeeds, 4000 0000 0000 0002 is declined\n")
	fmt.Fprintf(stdout, "Press Ctrl-C to stop.\n")

	<-ctx.Done()
	srv.Close()
	fmt.Fprintln(stdout, "stripe-sandbox: stopped")
	return nil
}
