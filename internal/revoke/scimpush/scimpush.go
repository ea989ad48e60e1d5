// Package scimpush is the driver for applications that take SCIM 2.0
// provisioning but offer no revocation endpoint: deactivating (or deleting)
// the user there ends their sessions and tokens at that application. It
// finds the user by a filter (RFC 7644 §3.4.2.2), then sends
// PATCH active=false (§3.5.2.3) or DELETE (§3.6).
package scimpush

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Actions a target can take.
const (
	Deactivate = "deactivate"
	Delete     = "delete"
)

// Matches are the attributes a user can be found by, tried in order.
var Matches = []string{"userName", "email", "externalId"}

const (
	contentType = "application/scim+json"
	patchSchema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	maxBody     = 1 << 20
)

// Config configures one SCIM push target.
type Config struct {
	// Endpoint is the application's SCIM base URL (…/scim/v2).
	Endpoint string
	Action   string   // deactivate (default) | delete
	Match    []string // default userName, email
	Tokens   revoke.TokenSource
	Client   *http.Client
	Now      func() time.Time
}

// Driver deactivates users at a SCIM service provider.
type Driver struct {
	cfg  Config
	base string
}

// New validates cfg.
func New(cfg Config) (*Driver, error) {
	var errs []error
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || u.RawQuery != "" {
		errs = append(errs, fmt.Errorf("scim: bad endpoint %q (the SCIM base URL, without a query)", cfg.Endpoint))
	}
	if cfg.Action == "" {
		cfg.Action = Deactivate
	}
	if cfg.Action != Deactivate && cfg.Action != Delete {
		errs = append(errs, fmt.Errorf("scim: action %q is not deactivate or delete", cfg.Action))
	}
	if len(cfg.Match) == 0 {
		cfg.Match = []string{"userName", "email"}
	}
	for _, m := range cfg.Match {
		if !slices.Contains(Matches, m) {
			errs = append(errs, fmt.Errorf("scim: match %q is not one of %v", m, Matches))
		}
	}
	if cfg.Tokens == nil || cfg.Client == nil || cfg.Now == nil {
		errs = append(errs, errors.New("scim: token source, http client and clock are required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Driver{cfg: cfg, base: strings.TrimRight(cfg.Endpoint, "/")}, nil
}

// Revoke finds the user, then deactivates or deletes them. A user the
// application does not have, or already inactive, is not applicable.
func (d *Driver) Revoke(ctx context.Context, job revoke.Job) revoke.Result {
	token, err := d.cfg.Tokens.Token(ctx)
	if err != nil {
		return revoke.ClassifyTokenError(err)
	}
	detail := map[string]any{"action": d.cfg.Action}
	id, active, by, r := d.find(ctx, token, job.Subject)
	if r != nil {
		r.Detail = detail
		return *r
	}
	detail["scim_id"], detail["found_by"] = id, by
	if id == "" {
		return revoke.Result{Class: revoke.NotApplicable, Detail: detail, Err: errors.New("no such user at the application")}
	}
	if id == "." || id == ".." {
		// A dot segment would step up the path at a server that resolves them.
		return revoke.Result{Class: revoke.Permanent, Detail: detail, Err: fmt.Errorf("the application's id for the user, %q, cannot be a path segment", id)}
	}
	if d.cfg.Action == Deactivate && !active {
		return revoke.Result{Class: revoke.NotApplicable, Detail: detail, Err: errors.New("the user is inactive already")}
	}
	var req *http.Request
	target := d.base + "/Users/" + url.PathEscape(id)
	if d.cfg.Action == Delete {
		req, err = http.NewRequestWithContext(ctx, http.MethodDelete, target, nil)
	} else {
		body, _ := json.Marshal(map[string]any{"schemas": []string{patchSchema},
			"Operations": []map[string]any{{"op": "replace", "path": "active", "value": false}}})
		req, err = http.NewRequestWithContext(ctx, http.MethodPatch, target, bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", contentType)
		}
	}
	if err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: fmt.Errorf("build request: %w", err), Detail: detail}
	}
	resp, err := d.do(req, token)
	if err != nil {
		res := revoke.ClassifyTransport(err)
		res.Detail = detail
		return res
	}
	defer resp.Body.Close()
	// 200 with the resource or 204 (§3.5.2); 404: gone since we looked.
	res := revoke.Answer(resp, d.cfg.Now(), []int{http.StatusOK, http.StatusNoContent}, []int{http.StatusNotFound})
	res.Detail = detail
	return res
}

func (d *Driver) do(req *http.Request, token string) (*http.Response, error) {
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", contentType+", application/json")
	return d.cfg.Client.Do(req)
}

// find looks the user up by each configured attribute in turn; r is the
// failure when the lookup itself failed.
func (d *Driver) find(ctx context.Context, token string, s events.Subject) (id string, active bool, by string, r *revoke.Result) {
	tried := false
	for _, m := range d.cfg.Match {
		var attr, value string
		switch m {
		case "userName":
			attr, value = "userName", s.Login
			if value == "" {
				value = s.Email
			}
		case "email":
			attr, value = "emails.value", s.Email
		case "externalId":
			attr, value = "externalId", s.ExternalID
			if value == "" {
				value = s.ID
			}
		}
		if value == "" {
			continue
		}
		tried = true
		id, active, r = d.lookup(ctx, token, attr, value)
		if r != nil || id != "" {
			return id, active, m, r
		}
	}
	if !tried {
		return "", false, "", &revoke.Result{Class: revoke.Permanent, Err: fmt.Errorf("the subject has none of %v to find them by", d.cfg.Match)}
	}
	return "", false, "", nil
}

// lookup runs one filter: exactly one user found, none, or a failure (two
// or more is a failure: deactivating the wrong person is worse than none).
func (d *Driver) lookup(ctx context.Context, token, attr, value string) (string, bool, *revoke.Result) {
	quoted, _ := json.Marshal(value) // a JSON string, as RFC 7644's filter grammar wants
	filter := attr + " eq " + string(quoted)
	q := url.Values{"filter": {filter}, "count": {"2"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/Users?"+q.Encode(), nil)
	if err != nil {
		return "", false, &revoke.Result{Class: revoke.Permanent, Err: fmt.Errorf("build request: %w", err)}
	}
	resp, err := d.do(req, token)
	if err != nil {
		r := revoke.ClassifyTransport(err)
		return "", false, &r
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r := revoke.Answer(resp, d.cfg.Now(), nil, nil)
		r.Err = fmt.Errorf("find user (%s): %w", filter, r.Err)
		return "", false, &r
	}
	var list struct {
		TotalResults json.Number `json:"totalResults"`
		Resources    []struct {
			ID     string `json:"id"`
			Active any    `json:"active"`
		} `json:"Resources"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&list); err != nil {
		return "", false, &revoke.Result{Class: revoke.Retry, HTTPStatus: resp.StatusCode, Err: fmt.Errorf("find user: not a SCIM list response: %w", err)}
	}
	switch n := len(list.Resources); {
	case n == 0:
		return "", false, nil
	case n > 1:
		return "", false, &revoke.Result{Class: revoke.Permanent, HTTPStatus: resp.StatusCode, Err: fmt.Errorf("find user: %d users match %s; refusing to guess", n, filter)}
	}
	u := list.Resources[0]
	if u.ID == "" {
		return "", false, &revoke.Result{Class: revoke.Permanent, HTTPStatus: resp.StatusCode, Err: errors.New("find user: the match has no id")}
	}
	return u.ID, isActive(u.Active), nil
}

// isActive reads "active" as applications send it: a boolean, a string
// ("True"/"false"), or absent (active, RFC 7643 leaves it to the provider;
// deactivating is then the safe move).
func isActive(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		b, err := strconv.ParseBool(strings.ToLower(x))
		return err != nil || b
	}
	return true
}
