package ssfpush

import (
	"errors"
	"fmt"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Registration is the ssfpush driver for the registry.
var Registration = revoke.Registration{
	Name: "ssfpush",
	Uses: func(t config.TargetConfig) []string {
		if len(t.SETEvents) > 0 {
			return []string{"set_events"}
		}
		return nil
	},
	Validate: func(t config.TargetConfig, _ bool) []error {
		var errs []error
		if t.Auth.Type == "signed_jwt" {
			errs = append(errs, errors.New("auth.type: the ssfpush driver's message is itself our signed JWT; use none or bearer"))
		}
		for k := range t.SETEvents {
			if !events.Kind(k).Valid() {
				errs = append(errs, fmt.Errorf("set_events: %q is not a kind", k))
			}
		}
		return errs
	},
	Open: func(t config.TargetConfig, sh revoke.Shared) (revoke.Driver, error) {
		evs := DefaultEvents()
		for k, v := range t.SETEvents {
			if uri, ok := ShortNames[v]; ok {
				v = uri
			}
			evs[events.Kind(k)] = v
		}
		return New(Config{Endpoint: t.Endpoint, Audience: t.Audience, SubjectFormat: t.SubjectFormat, Events: evs,
			Tokens: sh.Tokens, Issuer: sh.Issuer, Signer: sh.Signer, Client: sh.Client, Now: sh.Now})
	},
}
