package backchannel

import (
	"errors"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Registration is the backchannel driver for the registry.
var Registration = revoke.Registration{
	Name: "backchannel",
	Validate: func(t config.TargetConfig, _ bool) []error {
		if t.Auth.Type == "signed_jwt" {
			return []error{errors.New("auth.type: the backchannel driver's message is itself our signed JWT; use none or bearer")}
		}
		return nil
	},
	Open: func(t config.TargetConfig, sh revoke.Shared) (revoke.Driver, error) {
		return New(Config{Endpoint: t.Endpoint, Audience: t.Audience, SubjectFormat: t.SubjectFormat,
			Issuer: sh.Issuer, Signer: sh.Signer, Client: sh.Client, Now: sh.Now})
	},
	// Its relying parties verify the AS's ID tokens, so those algorithms
	// are the ones they are likely to take for logout tokens.
	AlgorithmsKey: func(config.TargetConfig) string { return "id_token_signing_alg_values_supported" },
}
