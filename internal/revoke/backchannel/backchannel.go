// Package backchannel is the OIDC Back-Channel Logout 1.0 driver: a form
// POST of logout_token, a JWT typed logout+jwt with iss, aud, iat, exp, jti,
// sub and the back-channel-logout event, and never a nonce. It reaches
// authorization servers that are OIDC relying parties of the enterprise IdP.
package backchannel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// JWTType is the logout token's typ (BCL 1.0 §2.4, IANA 2022).
const JWTType = "logout+jwt"

// EventURI is the event member every logout token carries.
const EventURI = "http://schemas.openid.net/event/backchannel-logout"

// Config configures one back-channel logout target.
type Config struct {
	Endpoint      string // the RP's backchannel_logout_uri
	Audience      string // aud: the RP's client id at the issuer
	SubjectFormat string // which identifier goes in sub: iss_sub/opaque → the IdP id, email → the email
	Issuer        string // our issuer
	Signer        *keys.Signer
	Client        *http.Client
	Now           func() time.Time
}

// Driver sends logout tokens.
type Driver struct{ cfg Config }

// New validates cfg.
func New(cfg Config) (*Driver, error) {
	if cfg.Endpoint == "" || cfg.Audience == "" || cfg.Issuer == "" || cfg.Signer == nil || cfg.Client == nil || cfg.Now == nil {
		return nil, errors.New("backchannel: endpoint, audience, issuer, signer, client and clock are required")
	}
	return &Driver{cfg: cfg}, nil
}

type claims struct {
	Iss    string                    `json:"iss"`
	Sub    string                    `json:"sub"`
	Aud    string                    `json:"aud"`
	Iat    int64                     `json:"iat"`
	Exp    int64                     `json:"exp"`
	Jti    string                    `json:"jti"`
	Events map[string]map[string]any `json:"events"`
}

// Revoke logs the subject out of every session at the RP (no sid: all of
// them, per BCL 1.0 §2.4).
func (d *Driver) Revoke(ctx context.Context, job revoke.Job) revoke.Result {
	sid, _, err := revoke.NewSubjectID(d.cfg.SubjectFormat, job.Subject)
	if err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: err}
	}
	sub := sid.Sub
	switch sid.Format {
	case "email":
		sub = sid.Email
	case "opaque":
		sub = sid.ID
	}
	now := d.cfg.Now()
	jti := uuid.NewString()
	tok, err := d.cfg.Signer.Sign(JWTType, claims{
		Iss: d.cfg.Issuer, Sub: sub, Aud: d.cfg.Audience, Iat: now.Unix(), Exp: now.Add(2 * time.Minute).Unix(), Jti: jti,
		Events: map[string]map[string]any{EventURI: {}},
	})
	if err != nil {
		return revoke.Result{Class: revoke.Retry, Err: fmt.Errorf("sign logout token: %w", err)}
	}
	detail := map[string]any{"jti": jti, "sub_format": sid.Format}
	form := url.Values{"logout_token": {tok}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.Endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: err, Detail: detail}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		r := revoke.ClassifyTransport(err)
		r.Detail = detail
		return r
	}
	defer resp.Body.Close()
	// 200 (or 204) is done; 400 means the RP refused the token, which no
	// retry fixes.
	r := revoke.Answer(resp, d.cfg.Now(), []int{http.StatusOK, http.StatusNoContent}, nil)
	r.Detail = detail
	return r
}
