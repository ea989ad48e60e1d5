// Package oktaapi calls the few Okta Management API endpoints the worker
// uses (the System Log, a user's sessions, grants and profile) on the org we
// configured and nothing else. It is plain net/http on purpose: it reads no
// configuration of its own (no ~/.okta/okta.yaml, no OKTA_CLIENT_*
// variables, no proxy or authorization mode from the environment), never
// follows a redirect (that would replay the SSWS token elsewhere), bounds
// what it reads, and leaves retries to its callers, which see every answer.
// See docs/decisions/0022-okta-api-without-the-sdk.md.
package oktaapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxBody bounds an answer's body: a System Log page of 1,000 events is a
// few MB.
const MaxBody = 32 << 20

// Config is what a client needs.
type Config struct {
	OrgURL string // https://acme.okta.com (http:// and a port only for loopback tests)
	Token  string // SSWS API token
	Client *http.Client
}

// Client calls one org's API.
type Client struct {
	base  string // scheme://host[:port], no trailing slash
	token string
	http  *http.Client
}

// New returns a client for cfg.OrgURL only.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.OrgURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || cfg.Token == "" || cfg.Client == nil {
		return nil, errors.New("okta client: org url, API token and http client are required")
	}
	// Okta's API never redirects; a redirect is a misconfiguration or an
	// attack, and following it would replay the SSWS token elsewhere.
	client := *cfg.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{base: u.Scheme + "://" + u.Host, token: cfg.Token, http: &client}, nil
}

// Response is an answer of any status.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// OK reports a 2xx answer.
func (r *Response) OK() bool { return r.Status/100 == 2 }

// Err describes a non-2xx answer with Okta's error code and summary
// (errorCode, errorSummary), when the body has them, cut to maxSummary
// bytes: the error goes into logs and the audit trail, and the body is the
// peer's to choose.
func (r *Response) Err(what string) error {
	var e struct {
		Code    string `json:"errorCode"`
		Summary string `json:"errorSummary"`
	}
	if json.Unmarshal(r.Body, &e) == nil && e.Code != "" {
		return fmt.Errorf("%s: HTTP %d: %s %s", what, r.Status, cut(e.Code, 40), cut(e.Summary, maxSummary))
	}
	return fmt.Errorf("%s: HTTP %d", what, r.Status)
}

// maxSummary bounds the errorSummary an error carries.
const maxSummary = 300

// cut returns s cut to at most n bytes on a rune boundary, marked when cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// RateLimitReset is X-Rate-Limit-Reset (epoch seconds), zero if absent.
func (r *Response) RateLimitReset() time.Time {
	sec, err := strconv.ParseInt(r.Header.Get("X-Rate-Limit-Reset"), 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

// UserPath is /api/v1/users/{id}, the id (or login) escaped as
// one path segment. An empty id, "." or ".." is refused: escaping leaves
// dots as they are, and a server or proxy that resolves dot segments would
// send the call to another resource (DELETE /api/v1/users/../sessions).
// Okta's ids and logins are never one of them.
func UserPath(id string) (string, error) {
	if id == "" || id == "." || id == ".." {
		return "", fmt.Errorf("okta user %q cannot be a path segment", id)
	}
	return "/api/v1/users/" + url.PathEscape(id), nil
}

// Do sends method to path (already escaped) with query and returns the
// answer; an error means no answer (or one that could not be read).
func (c *Client) Do(ctx context.Context, method, path string, query url.Values) (*Response, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "SSWS "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", method, path, err)
	}
	if len(body) > MaxBody {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, path, MaxBody)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}
