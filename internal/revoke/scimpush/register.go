package scimpush

import (
	"errors"
	"fmt"
	"slices"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Registration is the scim driver for the registry.
var Registration = revoke.Registration{
	Name: "scim",
	Uses: func(t config.TargetConfig) []string {
		if t.SCIM.Action != "" || len(t.SCIM.Match) > 0 {
			return []string{"scim"}
		}
		return nil
	},
	Validate: func(t config.TargetConfig, _ bool) []error {
		var errs []error
		if t.Auth.Type != "bearer" && t.Auth.Type != "client_credentials" {
			errs = append(errs, errors.New("auth.type: the scim driver needs bearer or client_credentials (the application's SCIM token)"))
		}
		if a := t.SCIM.Action; a != "" && a != Deactivate && a != Delete {
			errs = append(errs, fmt.Errorf("scim.action: %q is not deactivate or delete", a))
		}
		for _, m := range t.SCIM.Match {
			if !slices.Contains(Matches, m) {
				errs = append(errs, fmt.Errorf("scim.match: %q is not one of %v", m, Matches))
			}
		}
		return errs
	},
	Open: func(t config.TargetConfig, sh revoke.Shared) (revoke.Driver, error) {
		return New(Config{Endpoint: t.Endpoint, Action: t.SCIM.Action, Match: t.SCIM.Match, Tokens: sh.Tokens, Client: sh.Client, Now: sh.Now})
	},
}
