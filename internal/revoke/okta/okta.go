// Package okta is the driver for Okta itself (okta-sdk-golang v5): it clears
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
	"strconv"
	"strings"
	"time"

	sdk "github.com/okta/okta-sdk-golang/v5/okta"

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
	api    *sdk.APIClient
	issuer string
}

// New builds the SDK client (internal/oktaapi: ambient Okta settings are
// ignored).
func New(cfg Config) (*Driver, error) {
	u, err := url.Parse(cfg.OrgURL)
	if err != nil || u.Host == "" || cfg.Token == "" || cfg.Client == nil {
		return nil, errors.New("okta driver: org url, API token and http client are required")
	}
	// On a 429 the SDK returns no response, so its X-Rate-Limit-Reset
	// would be lost; a transport of ours reads it first.
	client := *cfg.Client
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	client.Transport = resetReader{base}
	// No SDK retries: the executor retries with the target's backoff,
	// breaker and timeout, and sees every attempt.
	api, err := oktaapi.New(oktaapi.Config{OrgURL: cfg.OrgURL, Token: cfg.Token, Client: &client})
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
	note := new(rateNote)
	ctx = context.WithValue(ctx, resetKey{}, note)
	resp, err := d.api.UserAPI.RevokeUserSessions(ctx, user).OauthTokens(true).Execute()
	if r, done := classify("clear sessions", resp, err, note); done {
		r.Detail = detail
		return r
	}
	resp, err = d.api.UserAPI.RevokeUserGrants(ctx, user).Execute()
	r, _ := classify("revoke grants", resp, err, note)
	if r.Class == revoke.NotApplicable {
		r = revoke.Result{Class: revoke.Succeeded, HTTPStatus: r.HTTPStatus} // sessions are gone; no grants is fine
	}
	r.Detail = detail
	return r
}

// classify maps an SDK answer; done is true when the job ends here (not a
// success of the first call).
func classify(what string, resp *sdk.APIResponse, err error, note *rateNote) (revoke.Result, bool) {
	status := 0
	if resp != nil && resp.Response != nil {
		status = resp.StatusCode
	}
	reset := note.reset
	if note.limited && status == 0 {
		status = http.StatusTooManyRequests // the SDK drops a 429's response
	}
	switch {
	case err == nil && status/100 == 2:
		return revoke.Result{Class: revoke.Succeeded, HTTPStatus: status}, false
	case status == http.StatusNotFound:
		return revoke.Result{Class: revoke.NotApplicable, HTTPStatus: status, Err: fmt.Errorf("%s: user not found", what)}, true
	case status == http.StatusTooManyRequests || strings.Contains(fmt.Sprint(err), "too many requests"):
		r := revoke.Result{Class: revoke.Retry, HTTPStatus: http.StatusTooManyRequests, Err: fmt.Errorf("%s: rate limited", what)}
		if !reset.IsZero() {
			r.RetryAfter = max(time.Until(reset), 0)
		}
		return r, true
	case status >= 500 || status == 0:
		if errors.Is(err, context.DeadlineExceeded) || status == 0 {
			return revoke.Result{Class: revoke.Retry, HTTPStatus: status, Err: fmt.Errorf("%s: %v", what, err)}, true
		}
		return revoke.Result{Class: revoke.Retry, HTTPStatus: status, Err: fmt.Errorf("%s: HTTP %d", what, status)}, true
	default:
		return revoke.Result{Class: revoke.Permanent, HTTPStatus: status, Err: fmt.Errorf("%s: HTTP %d: %v", what, status, err)}, true
	}
}

type resetKey struct{}

// rateNote is what resetReader saw of a 429: that it came, and its
// X-Rate-Limit-Reset.
type rateNote struct {
	limited bool
	reset   time.Time
}

// resetReader notes a 429 and its X-Rate-Limit-Reset (epoch seconds) in
// the request's context.
type resetReader struct{ base http.RoundTripper }

func (t resetReader) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		if p, ok := req.Context().Value(resetKey{}).(*rateNote); ok {
			p.limited = true
			if sec, perr := strconv.ParseInt(resp.Header.Get("X-Rate-Limit-Reset"), 10, 64); perr == nil {
				p.reset = time.Unix(sec, 0)
			}
		}
	}
	return resp, err
}
