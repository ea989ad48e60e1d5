package okta

import (
	"errors"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Registration is the okta driver for the registry.
var Registration = revoke.Registration{
	Name: "okta",
	// Okta itself: the org and its API token, unless the target names
	// others.
	Defaults: func(t *config.TargetConfig, c *config.Config) {
		if t.Endpoint == "" {
			t.Endpoint = c.Okta.OrgURL
		}
		if t.Auth.Type == "" && t.Auth.Token == "" && c.Okta.APIToken != "" {
			t.Auth = config.AuthConfig{Type: "bearer", Token: c.Okta.APIToken}
		}
	},
	Validate: func(t config.TargetConfig, secretsOptional bool) []error {
		if t.Auth.Type != "bearer" || t.Auth.Token == "" && !secretsOptional {
			return []error{errors.New("auth: the okta driver needs an API token (okta.api_token, or auth.token here)")}
		}
		return nil
	},
	Open: func(t config.TargetConfig, sh revoke.Shared) (revoke.Driver, error) {
		return New(Config{OrgURL: t.Endpoint, Token: t.Auth.Token, Client: sh.Client})
	},
}
