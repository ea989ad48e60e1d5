// Package ssfpush sends CAEP/RISC Security Event Tokens (RFC 8417, SSF 1.0)
// by push delivery (RFC 8935): one event per SET, typ secevent+jwt, sub_id
// and never sub or exp; 202 means delivered, 400 with {"err":…} means the
// receiver refused it for good.
package ssfpush

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// JWTType is the SET's typ (SSF 1.0: MUST).
const JWTType = "secevent+jwt"

// Event type URIs.
const (
	SessionRevoked  = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	AccountDisabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	AccountPurged   = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	CredentialChgRq = "https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required"
)

// ShortNames are the event names a target's map may use.
var ShortNames = map[string]string{
	"session-revoked": SessionRevoked, "account-disabled": AccountDisabled, "account-purged": AccountPurged,
	"account-credential-change-required": CredentialChgRq,
}

// DefaultEvents maps kinds to events: RISC account-disabled for a
// deprovisioning, CAEP session-revoked for the rest.
func DefaultEvents() map[events.Kind]string {
	return map[events.Kind]string{
		events.KindDeprovisioned: AccountDisabled, events.KindSuspended: AccountDisabled,
		events.KindSessionsRevoked: SessionRevoked, events.KindCredentialsChanged: SessionRevoked,
		events.KindRiskElevated: SessionRevoked, events.KindAccessRemoved: SessionRevoked,
	}
}

// Config configures one SSF receiver.
type Config struct {
	Endpoint      string
	Audience      string
	SubjectFormat string
	Events        map[events.Kind]string // kind → event type URI
	Tokens        revoke.TokenSource     // optional bearer for the receiver
	Issuer        string
	Signer        *keys.Signer
	Client        *http.Client
	Now           func() time.Time
}

// Driver pushes SETs.
type Driver struct{ cfg Config }

// New validates cfg.
func New(cfg Config) (*Driver, error) {
	if cfg.Endpoint == "" || cfg.Audience == "" || cfg.Issuer == "" || cfg.Signer == nil || cfg.Client == nil || cfg.Now == nil || len(cfg.Events) == 0 {
		return nil, errors.New("ssfpush: endpoint, audience, issuer, events, signer, client and clock are required")
	}
	return &Driver{cfg: cfg}, nil
}

type set struct {
	Iss    string                    `json:"iss"`
	Iat    int64                     `json:"iat"`
	Jti    string                    `json:"jti"`
	Aud    string                    `json:"aud"`
	Txn    string                    `json:"txn"`
	SubID  revoke.SubjectID          `json:"sub_id"`
	Events map[string]map[string]any `json:"events"`
}

// Revoke pushes the SET for the job's kind.
func (d *Driver) Revoke(ctx context.Context, job revoke.Job) revoke.Result {
	uri, ok := d.cfg.Events[job.Kind]
	if !ok {
		return revoke.Result{Class: revoke.NotApplicable, Err: fmt.Errorf("no SET event for kind %s", job.Kind)}
	}
	sid, _, err := revoke.NewSubjectID(d.cfg.SubjectFormat, job.Subject)
	if err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: err}
	}
	body := map[string]any{"event_timestamp": job.OccurredAt.Unix(), "initiating_entity": "admin"}
	if uri == SessionRevoked {
		// The SSF interoperability profile wants a non-empty reason_admin.
		body["reason_admin"] = map[string]string{"en": "IdP lifecycle change: " + job.Cause}
	}
	now := d.cfg.Now()
	jti := uuid.NewString()
	tok, err := d.cfg.Signer.Sign(JWTType, set{Iss: d.cfg.Issuer, Iat: now.Unix(), Jti: jti, Aud: d.cfg.Audience, Txn: job.EventID,
		SubID: sid, Events: map[string]map[string]any{uri: body}})
	if err != nil {
		return revoke.Result{Class: revoke.Retry, Err: fmt.Errorf("sign SET: %w", err)}
	}
	detail := map[string]any{"jti": jti, "event": uri, "sub_id_format": sid.Format}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.Endpoint, bytes.NewReader([]byte(tok)))
	if err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: err, Detail: detail}
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if d.cfg.Tokens != nil {
		tok, err := d.cfg.Tokens.Token(ctx)
		if err != nil {
			r := revoke.ClassifyTokenError(err)
			r.Detail = detail
			return r
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		r := revoke.ClassifyTransport(err)
		r.Detail = detail
		return r
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusBadRequest {
		// RFC 8935 §2.3: the receiver refused the SET, and says why.
		var e struct {
			Err         string `json:"err"`
			Description string `json:"description"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return revoke.Result{Class: revoke.Permanent, HTTPStatus: 400, Err: fmt.Errorf("HTTP 400 %s: %s", e.Err, e.Description), Detail: detail}
	}
	r := revoke.Answer(resp, d.cfg.Now(), []int{http.StatusAccepted}, nil)
	r.Detail = detail
	return r
}
