package okta

import (
	"errors"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Registration is the okta driver for the registry.
var Registration = revoke.Registration{
	Name: "okta",
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
