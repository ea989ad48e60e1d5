// Package oktaapi builds okta-sdk-golang v5 clients that talk to the org we
// configured and nothing else. The SDK merges ~/.okta/okta.yaml, an
// .okta.yaml beside its source and OKTA_CLIENT_* variables into its
// configuration: an ambient proxy would route our API token elsewhere, an
// ambient authorization mode would replace SSWS. Every such setting is
// pinned here, and the SDK's port-dropping of the org URL is undone.
package oktaapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/okta/okta-sdk-golang/v5/okta"
)

// Config is what a client needs.
type Config struct {
	OrgURL string
	Token  string // SSWS API token
	Client *http.Client
	// MaxRetries and MaxBackoff (seconds) are the SDK's own 429 retries.
	MaxRetries int32
	MaxBackoff int64
}

// New returns an API client for cfg.OrgURL only.
func New(cfg Config) (*okta.APIClient, error) {
	u, err := url.Parse(cfg.OrgURL)
	if err != nil || u.Host == "" || cfg.Token == "" || cfg.Client == nil {
		return nil, errors.New("okta client: org url, API token and http client are required")
	}
	// Okta's API never redirects; a redirect is a misconfiguration or an
	// attack, and following it would replay the SSWS token elsewhere.
	client := *cfg.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	oc, err := okta.NewConfiguration(
		okta.WithOrgUrl(cfg.OrgURL), okta.WithToken(cfg.Token), okta.WithAuthorizationMode("SSWS"),
		okta.WithCache(false), okta.WithHttpClientPtr(&client),
		okta.WithRateLimitMaxRetries(cfg.MaxRetries), okta.WithRateLimitMaxBackOff(cfg.MaxBackoff),
		okta.WithUserAgentExtra("lifecycle-worker"),
	)
	if err != nil {
		return nil, fmt.Errorf("okta config: %w", err)
	}
	// No ambient proxy (NewAPIClient would swap our client for one that
	// uses it) and no ambient request timeout (the caller's context bounds
	// every call).
	oc.Okta.Client.Proxy.Host, oc.Okta.Client.Proxy.Port = "", 0
	oc.Okta.Client.Proxy.Username, oc.Okta.Client.Proxy.Password = "", ""
	oc.Okta.Client.RequestTimeout, oc.Okta.Client.ConnectionTimeout = 0, 0
	oc.Okta.Client.RateLimit.MaxRetries, oc.Okta.Client.RateLimit.MaxBackoff = cfg.MaxRetries, cfg.MaxBackoff
	oc.Okta.Client.RateLimit.Enable = false
	// The SDK keeps only the host name and would drop a port (Okta itself
	// never has one; loopback doubles do).
	oc.Host = u.Host
	oc.Scheme = u.Scheme
	return okta.NewAPIClient(oc), nil
}
