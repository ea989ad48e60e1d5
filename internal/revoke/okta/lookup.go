package okta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/oktaapi"
)

// Lookup resolves a user's email with GET /api/v1/users/{id}, for subjects
// of this org only.
type Lookup struct {
	api    *oktaapi.Client
	issuer string
}

// NewLookup builds the lookup (scope okta.users.read).
func NewLookup(orgURL, token string, client *http.Client) (*Lookup, error) {
	api, err := oktaapi.New(oktaapi.Config{OrgURL: orgURL, Token: token, Client: client})
	if err != nil {
		return nil, err
	}
	return &Lookup{api: api, issuer: strings.TrimRight(orgURL, "/")}, nil
}

// Name is what the audit trail records as the email's source.
func (l *Lookup) Name() string { return "okta_api" }

// Email returns the user's profile email.
func (l *Lookup) Email(ctx context.Context, s events.Subject) (string, error) {
	if s.Issuer != "" && strings.TrimRight(s.Issuer, "/") != l.issuer {
		return "", errors.New("subject of another issuer")
	}
	path, err := oktaapi.UserPath(s.ID)
	if err != nil {
		return "", err
	}
	resp, err := l.api.Do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return "", fmt.Errorf("okta user lookup: %w", err)
	}
	if !resp.OK() {
		return "", resp.Err("okta user lookup")
	}
	var u struct {
		Profile struct {
			Email string `json:"email"`
		} `json:"profile"`
	}
	if err := json.Unmarshal(resp.Body, &u); err != nil {
		return "", fmt.Errorf("okta user lookup: %w", err)
	}
	return u.Profile.Email, nil
}
