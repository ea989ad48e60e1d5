package gtr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// JWTType is the `typ` header of the bearer JWT (-06 §3.5).
const JWTType = "global-token-revocation+jwt"

// Config configures one GTR target.
type Config struct {
	Endpoint      string
	SubjectFormat string // email | iss_sub | opaque
	// Auth is "signed_jwt" (Signer required) or "token" (Tokens required:
	// a static bearer token or OAuth client credentials).
	Auth     string
	Tokens   revoke.TokenSource
	Signer   *keys.Signer
	Issuer   string // our issuer: the JWT's iss
	ClientID string // who we are at the AS: the JWT's sub
	Client   *http.Client
	Now      func() time.Time
}

// Driver sends Global Token Revocation requests.
type Driver struct {
	cfg Config
	aud string
}

// New validates cfg and returns a driver.
func New(cfg Config) (*Driver, error) {
	var errs []error
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("gtr: bad endpoint %q", cfg.Endpoint))
	}
	switch cfg.Auth {
	case "signed_jwt":
		if cfg.Signer == nil || cfg.Issuer == "" || cfg.ClientID == "" {
			errs = append(errs, errors.New("gtr: signed_jwt needs a signer, issuer and client id"))
		}
	case "token":
		if cfg.Tokens == nil {
			errs = append(errs, errors.New("gtr: token auth needs a token source"))
		}
	default:
		errs = append(errs, fmt.Errorf("gtr: unsupported auth %q", cfg.Auth))
	}
	if cfg.Client == nil || cfg.Now == nil {
		errs = append(errs, errors.New("gtr: http client and clock are required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// aud is the endpoint without query or fragment (-06 §3.5).
	aud := *u
	aud.RawQuery, aud.Fragment = "", ""
	return &Driver{cfg: cfg, aud: aud.String()}, nil
}

type claims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Jti string `json:"jti"`
	Iat int64  `json:"iat"`
	Nbf int64  `json:"nbf"`
	Exp int64  `json:"exp"`
}

// Revoke sends one request and classifies the answer.
func (d *Driver) Revoke(ctx context.Context, job revoke.Job) revoke.Result {
	sid, usedLogin, err := revoke.NewSubjectID(d.cfg.SubjectFormat, job.Subject)
	if err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: err}
	}
	detail := map[string]any{"sub_id_format": sid.Format}
	if usedLogin {
		detail["email_from"] = "login"
	}
	body, err := json.Marshal(map[string]any{"sub_id": sid})
	if err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: fmt.Errorf("encode body: %w", err), Detail: detail}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.Endpoint, bytes.NewReader(body))
	if err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: fmt.Errorf("build request: %w", err), Detail: detail}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	var bearer string
	if d.cfg.Auth == "token" {
		if bearer, err = d.cfg.Tokens.Token(ctx); err != nil {
			r := revoke.ClassifyTokenError(err)
			r.Detail = detail
			return r
		}
	}
	if d.cfg.Auth == "signed_jwt" {
		now := d.cfg.Now()
		jti := uuid.NewString()
		bearer, err = d.cfg.Signer.Sign(JWTType, claims{
			Iss: d.cfg.Issuer, Sub: d.cfg.ClientID, Aud: d.aud, Jti: jti,
			Iat: now.Unix(), Nbf: now.Add(-time.Minute).Unix(), Exp: now.Add(5 * time.Minute).Unix(),
		})
		if err != nil {
			return revoke.Result{Class: revoke.Retry, Err: fmt.Errorf("sign bearer: %w", err), Detail: detail}
		}
		detail["jti"] = jti
	}
	req.Header.Set("Authorization", "Bearer "+bearer)

	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		r := revoke.ClassifyTransport(err)
		r.Detail = detail
		return r
	}
	defer resp.Body.Close()
	// docs/architecture.md, Answer classes: 200 and 204 succeed (Auth0 answers 200, the draft 204);
	// 404 is "no such user here"; 400/401/403/422 need a human.
	r := revoke.Answer(resp, d.cfg.Now(), []int{http.StatusOK, http.StatusNoContent}, []int{http.StatusNotFound})
	r.Detail = detail
	return r
}
