package gtr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Registration is the gtr driver for the registry.
var Registration = revoke.Registration{
	Name: "gtr",
	Defaults: func(t *config.TargetConfig, _ *config.Config) {
		if t.Auth.Type == "" {
			t.Auth.Type = "signed_jwt" // our JWT, which the AS verifies with our JWKS
		}
	},
	Validate: func(t config.TargetConfig, _ bool) []error {
		if t.Auth.Type == "none" {
			return []error{errors.New("auth.type: Global Token Revocation requires authentication")}
		}
		return nil
	},
	Open: func(t config.TargetConfig, sh revoke.Shared) (revoke.Driver, error) {
		return New(Config{Endpoint: t.Endpoint, SubjectFormat: t.SubjectFormat, Auth: sh.Auth, Tokens: sh.Tokens,
			Signer: sh.Signer, Issuer: sh.Issuer, ClientID: t.ClientID, Client: sh.Client, Now: sh.Now})
	},
	Probe: probe,
	AlgorithmsKey: func(t config.TargetConfig) string {
		if t.Auth.Type == "signed_jwt" {
			return "global_token_revocation_endpoint_auth_signing_alg_values_supported"
		}
		return ""
	},
}

// probe proves our authentication without revoking: a request for a
// subject no AS knows, which an AS that trusts us refuses with 400.
func probe(ctx context.Context, t config.TargetConfig, sh revoke.Shared) string {
	body := []byte(`{"sub_id":{"format":"lifecycle-worker-check","id":"probe"}}`)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.Endpoint, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	switch sh.Auth {
	case "token":
		tok, err := sh.Tokens.Token(ctx)
		if err != nil {
			return "cannot get a token: " + err.Error()
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case "signed_jwt":
		now := time.Now()
		tok, err := sh.Signer.Sign(JWTType, map[string]any{"iss": sh.Issuer, "sub": t.ClientID, "aud": t.Endpoint,
			"jti": fmt.Sprintf("check-%d", now.UnixNano()), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
		if err != nil {
			return "cannot sign: " + err.Error()
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := sh.Client.Do(req)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusBadRequest:
		return "ok (authenticated; the probe subject was refused as it should be)"
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Sprintf("authentication refused (HTTP %d): does the AS trust %s/.well-known/jwks.json?", resp.StatusCode, sh.Issuer)
	default:
		return fmt.Sprintf("unexpected HTTP %d to a probe", resp.StatusCode)
	}
}
