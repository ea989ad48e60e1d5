// Package okta is the driver for Okta itself (the Management API): it clears
// the user's Okta sessions together with the OAuth tokens Okta issued
// (oauthTokens=true) and revokes the user's grants. Without Okta refresh
// tokens an AI client can mint no new ID-JAG for the user, so this closes
// the door the other drivers clean up behind.
package okta

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/oktaapi"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Config configures the Okta target.
type Config struct {
	OrgURL string // https://acme.okta.com (http:// and a port only for loopback tests)
	Token  string // SSWS API token with okta.users.manage
	Client *http.Client
}

// Driver revokes at Okta.
type Driver struct {
	api    *oktaapi.Client
	issuer string
}

// New builds the API client (internal/oktaapi: no ambient settings, no
// redirects). It retries nothing itself: the executor retries with the
// target's backoff, breaker and timeout, and sees every attempt.
func New(cfg Config) (*Driver, error) {
	api, err := oktaapi.New(oktaapi.Config{OrgURL: cfg.OrgURL, Token: cfg.Token, Client: cfg.Client})
	if err != nil {
		return nil, fmt.Errorf("okta driver: %w", err)
	}
	return &Driver{api: api, issuer: strings.TrimRight(cfg.OrgURL, "/")}, nil
}

// Revoke clears sessions (with OAuth tokens) and grants. The user is the
// IdP id when the event came from this org, else the login (Okta accepts
// either in the path).
func (d *Driver) Revoke(ctx context.Context, job revoke.Job) revoke.Result {
	user := job.Subject.ID
	if user == "" || (job.Subject.Issuer != "" && strings.TrimRight(job.Subject.Issuer, "/") != d.issuer) {
		user = job.Subject.Login
	}
	if user == "" {
		return revoke.Result{Class: revoke.Permanent, Err: errors.New("subject has no Okta id or login")}
	}
	detail := map[string]any{"okta_user": user}
	path, err := oktaapi.UserPath(user)
	if err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: err, Detail: detail}
	}
	// DELETE /api/v1/users/{id}/sessions?oauthTokens=true
	resp, err := d.api.Do(ctx, http.MethodDelete, path+"/sessions", url.Values{"oauthTokens": {"true"}})
	if r, done := classify("clear sessions", resp, err); done {
		r.Detail = detail
		return r
	}
	// DELETE /api/v1/users/{id}/grants
	resp, err = d.api.Do(ctx, http.MethodDelete, path+"/grants", nil)
	r, _ := classify("revoke grants", resp, err)
	if r.Class == revoke.NotApplicable {
		r = revoke.Result{Class: revoke.Succeeded, HTTPStatus: r.HTTPStatus} // sessions are gone; no grants is fine
	}
	r.Detail = detail
	return r
}

// classify maps an answer; done is true when the job ends here (not a
// success of the first call).
func classify(what string, resp *oktaapi.Response, err error) (revoke.Result, bool) {
	switch {
	case err != nil:
		return revoke.Result{Class: revoke.Retry, Err: fmt.Errorf("%s: %w", what, err)}, true
	case resp.OK():
		return revoke.Result{Class: revoke.Succeeded, HTTPStatus: resp.Status}, false
	case resp.Status == http.StatusNotFound:
		return revoke.Result{Class: revoke.NotApplicable, HTTPStatus: resp.Status, Err: resp.Err(what + ": user not found")}, true
	case resp.Status == http.StatusTooManyRequests:
		r := revoke.Result{Class: revoke.Retry, HTTPStatus: resp.Status, Err: resp.Err(what + ": rate limited")}
		if reset := resp.RateLimitReset(); !reset.IsZero() {
			r.RetryAfter = max(time.Until(reset), 0)
		}
		return r, true
	case resp.Status >= 500:
		return revoke.Result{Class: revoke.Retry, HTTPStatus: resp.Status, Err: resp.Err(what)}, true
	default:
		return revoke.Result{Class: revoke.Permanent, HTTPStatus: resp.Status, Err: resp.Err(what)}, true
	}
}
