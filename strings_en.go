package paywall

// English: the default language (defaultLanguage), and the reference that
// every other strings_<lang>.go follows key by key. {seconds} stands for
// Retry-After, {wait} for wait_seconds or wait_minutes with {n} filled in,
// {minutes} for how long a sign-in link lasts.
func init() {
	addLanguage("en", map[string]string{
		"status_400":                            "Bad request",
		"status_402":                            "Payment required",
		"status_403":                            "Forbidden",
		"status_410":                            "Gone",
		"title_identity_missing":                "Sign in to subscribe",
		"detail_identity_missing":               "Subscriptions belong to your account on this site. Sign in first, then subscribe. Nothing was charged.",
		"detail_no_subscription_account":        "This page is for subscribers, and your account does not have a subscription yet.",
		"detail_checkout_not_completed_account": "You started a checkout, but it was not completed, for example because the card was declined. Continue it to try another card or payment method. If you have already paid, continuing lets you in without charging you again.",

		"title_signin":                "Sign in with your email",
		"detail_signin":               "Enter the email address you subscribed with. We will send you a link that signs you in on this device.",
		"title_signin_sent":           "Check your inbox",
		"detail_signin_sent":          "If that address belongs to a subscriber, a sign-in link is on its way. It works once, for {minutes} minutes. Nothing arrived? Check your spam folder, or ask for a new link in a few minutes.",
		"title_signin_confirm":        "Sign in on this device?",
		"detail_signin_confirm":       "Press the button to finish signing in. Your subscription will be known in this browser.",
		"title_signin_email_invalid":  "That is not an email address",
		"detail_signin_email_invalid": "Enter the email address you subscribed with, such as name@example.com.",
		"title_signin_link_invalid":   "This sign-in link does not work",
		"detail_signin_link_invalid":  "The link is incomplete or was not made by this site. Copy the whole link from the mail, or ask for a new one.",
		"title_signin_link_expired":   "This sign-in link has expired",
		"detail_signin_link_expired":  "Sign-in links work for a short time only. Ask for a new one below.",
		"title_signin_link_used":      "This sign-in link was already used",
		"detail_signin_link_used":     "Each sign-in link works once. If it was you, you are signed in where you used it. To sign in here as well, ask for a new link.",

		"signin_heading": "Already subscribed?",
		"signin_summary": "Already subscribed? Email me a sign-in link",
		"signin_label":   "Email address",
		"signin_button":  "Email me a sign-in link",
		"signin_note":    "We will send a link that signs you in on this device. It works once, for {minutes} minutes.",
		"signin_confirm": "Sign in",
		"signin_as":      "This link opens the subscription of",
		"status_429":     "Too many requests",
		"status_500":     "Server error",
		"status_503":     "Service unavailable",

		"title_no_subscription":         "Subscription required",
		"detail_no_subscription":        "This page is for subscribers, and this browser does not have a subscription yet.",
		"title_subscription_ended":      "Your subscription has ended",
		"detail_subscription_ended":     "Your subscription is no longer active. Subscribe again to get access back.",
		"title_payment_failed":          "Your last payment failed",
		"detail_payment_failed":         "We could not charge your payment method for your latest renewal, so access is paused. Update your payment method to restore it. You do not need to subscribe again.",
		"title_payment_processing":      "Your payment is on its way",
		"detail_payment_processing":     "Your bank payment is still being processed; this can take a few business days. You will be let in as soon as it clears, with nothing more to do. Do not pay again.",
		"title_trial_ended":             "Your free trial has ended",
		"detail_trial_ended":            "Your free trial is over. Subscribe to keep your access.",
		"title_checkout_not_completed":  "Your checkout was not completed",
		"detail_checkout_not_completed": "You started a checkout in this browser, but it was not completed, for example because the card was declined. Continue it to try another card or payment method. If you have already paid, continuing lets you in without charging you again.",
		"title_stripe_unavailable":      "Payment system temporarily unavailable",
		"detail_stripe_unavailable":     "We cannot reach our payment system right now, so we cannot check your subscription. Nothing was charged by this page. Please wait about {seconds} seconds and try again, and do not pay again.",

		"title_checkout_link_invalid":   "This checkout link does not work",
		"detail_checkout_link_invalid":  "The link that brought you here does not name a checkout of this site. Nothing was charged by this page. If you have paid, your subscription is safe: go back to the page, and if it still asks you to subscribe, contact us rather than paying again.",
		"title_checkout_other_browser":  "This checkout belongs to another browser",
		"detail_checkout_other_browser": "To keep your payment safe, a checkout can only be finished in the browser where it was started. If you have paid, your subscription is safe: open this site in that browser, or contact us. Please do not pay again.",
		"title_checkout_limited":        "Too many checkouts from your network",
		"detail_checkout_limited":       "Checkouts started from your network have reached this site's limit. Nothing was charged. Please wait about {wait} and try again.",
		"title_success_limited":         "Too many checkout links from your network",
		"detail_success_limited":        "Your network has opened too many checkout links that were not its own, so this one has to wait. If you have paid, your subscription is safe and nothing will be charged again: wait about {wait}, then reload this page.",
		"title_checkout_busy":           "Too many checkouts right now",
		"detail_checkout_busy":          "Many people are starting a checkout at this moment. Nothing was charged. Please wait about {wait} and try again.",
		"title_origin_unknown":          "Checkout is not available at this address",
		"detail_origin_unknown":         "This site cannot send you to its payment page from the address you used. Nothing was charged. Open the site at its usual address, or contact us.",

		"subscribe":          "Subscribe",
		"subscribe_again":    "Subscribe again",
		"try_again":          "Continue checkout",
		"checkout_note":      "You will pay securely with Stripe and come back to this page.",
		"charged_note":       "If you were charged anyway, do not pay again: contact us and we will sort it out.",
		"processing_note":    "If it has not cleared after a few business days, contact us and we will sort it out.",
		"update_payment":     "Update payment method",
		"portal_note":        "You will update it securely with Stripe and come back to this page.",
		"retry":              "Try again",
		"unavailable_notice": "If you already have a subscription, it is safe. There is nothing to pay on this page.",

		"other_device_heading": "Already subscribed on another device?",
		"other_device_text":    "Your subscription is remembered in the browser you paid with. Open this site there.",
		"other_device_support": "Please do not subscribe a second time here: contact support and we will help.",
		"support":              "Contact support",
		"not_you":              "Not you?",
		"sign_out":             "Sign out",
		"back":                 "Back to the page",
		"wait_seconds":         "{n} seconds",
		"wait_minutes":         "{n} minutes",
	})
}

// The sign-in mail's words (mail.go).
func init() {
	addMailLanguage("en", map[string]string{
		"subject":  "Your sign-in link for {site}",
		"intro":    "Someone, hopefully you, asked to sign in to {site} with this email address. Open this link to sign in on the device where you open it:",
		"button":   "Sign in to {site}",
		"lifetime": "The link works once, in any browser, for {minutes} minutes.",
		"ignore":   "If you did not ask for this, ignore this mail: nobody can sign in without the link, and nothing changes.",
		"plain":    "If the button does not work, copy this address into your browser:",
	})
}
