package broker

import (
	"net/netip"
	"net/url"
	"strings"
)

// MaxWebhookURL is the longest webhook URL accepted.
const MaxWebhookURL = 500

// WebhookURL is a parsed webhook address.
type WebhookURL struct {
	Raw  string
	Host string      // host[:port], as in the URL
	IP   *netip.Addr // the host when it is an address literal
}

// ParseWebhookURL checks an office's webhook address: https:// (or
// http:// when allowHTTP), a host, no credentials. Errors: EINVALID.
func ParseWebhookURL(raw string, allowHTTP bool) (WebhookURL, error) {
	u, err := url.Parse(raw)
	ok := err == nil && u.Hostname() != "" && u.User == nil && (u.Scheme == "https" || (u.Scheme == "http" && allowHTTP))
	if !ok || len(raw) > MaxWebhookURL {
		return WebhookURL{}, CodeErrorf(EINVALID, CodeInvalidField, "url must be an https:// URL without credentials")
	}
	w := WebhookURL{Raw: raw, Host: u.Host}
	if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
		w.IP = &ip
	}
	return w, nil
}

// WebhookHost is the host[:port] of a stored webhook URL, for audit
// entries and logs ("?" when it does not parse).
func WebhookHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Host
}
