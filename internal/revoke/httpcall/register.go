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
	Defaults: func(t *config.TargetConfig, _ *config.Config) {
		if t.HTTP.Method == "" {
			t.HTTP.Method = "POST"
		}
		if len(t.HTTP.Success) == 0 {
			t.HTTP.Success = []int{200, 201, 202, 204}
		}
	},
	Uses: func(t config.TargetConfig) []string {
		if t.HTTP.Method != "" || t.HTTP.Body != "" || len(t.HTTP.Headers) > 0 || len(t.HTTP.Success) > 0 || len(t.HTTP.NotApplicable) > 0 {
			return []string{"http"}
		}
		return nil
	},
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
