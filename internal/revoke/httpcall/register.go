package httpcall

import (
	"fmt"
	"slices"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Registration is the httpcall driver for the registry.
var Registration = revoke.Registration{
	Name: "httpcall",
	Validate: func(t config.TargetConfig, _ bool) []error {
		if !slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE"}, t.HTTP.Method) {
			return []error{fmt.Errorf("http.method: %q is not supported", t.HTTP.Method)}
		}
		return nil
	},
	Open: func(t config.TargetConfig, sh revoke.Shared) (revoke.Driver, error) {
		return New(Config{Method: t.HTTP.Method, URL: t.Endpoint, Headers: t.HTTP.Headers, Body: t.HTTP.Body,
			Success: t.HTTP.Success, NotApplicable: t.HTTP.NotApplicable,
			Auth: sh.Auth, Tokens: sh.Tokens, Signer: sh.Signer, Issuer: sh.Issuer, ClientID: t.ClientID,
			AllowInsecureHTTP: t.AllowInsecureHTTP, Client: sh.Client, Now: sh.Now})
	},
}
