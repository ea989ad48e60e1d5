package okta_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/okta"
)

// oktaAPI is the two Okta endpoints the driver calls, checking what the
// Management API documents: SSWS auth, DELETE, the paths, oauthTokens=true.
type oktaAPI struct {
	mu       sync.Mutex
	calls    []string
	problems []string
	sessions int // status for DELETE …/sessions
	grants   int
}

func (o *oktaAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, r.Method+" "+r.URL.RequestURI())
	if r.Header.Get("Authorization") != "SSWS okta-token" {
		o.problems = append(o.problems, "auth "+r.Header.Get("Authorization"))
	}
	status := 404
	switch {
	case r.Method == http.MethodDelete && r.URL.Path == "/api/v1/users/00ujane/sessions":
		if r.URL.Query().Get("oauthTokens") != "true" {
			o.problems = append(o.problems, "sessions without oauthTokens=true")
		}
		status = o.sessions
	case r.Method == http.MethodDelete && r.URL.Path == "/api/v1/users/00ujane/grants":
		status = o.grants
	}
	if status == 429 {
		w.Header().Set("X-Rate-Limit-Reset", strconv.FormatInt(time.Now().Add(30*time.Second).Unix(), 10))
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	if status >= 400 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"errorCode":"E0000007","errorSummary":"Not found: Resource not found: 00ujane (User)"}`))
		return
	}
	w.WriteHeader(status)
}

// driverFor serves api and returns a driver for it and its URL.
func driverFor(t *testing.T, api *oktaAPI) (*okta.Driver, string) {
	t.Helper()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	d, err := okta.New(okta.Config{OrgURL: srv.URL, Token: "okta-token", Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return d, srv.URL
}

func TestOktaDriver(t *testing.T) {
	jane := events.Subject{Issuer: "", ID: "00ujane", Login: "jane@example.com"}
	for _, c := range []struct {
		sessions, grants int
		want             revoke.Class
		calls            int
	}{
		{204, 204, revoke.Succeeded, 2},
		{204, 404, revoke.Succeeded, 2},
		{404, 204, revoke.NotApplicable, 1},
		{429, 204, revoke.Retry, 1},
		{500, 204, revoke.Retry, 1},
		{403, 204, revoke.Permanent, 1},
	} {
		api := &oktaAPI{sessions: c.sessions, grants: c.grants}
		d, url := driverFor(t, api)
		jane.Issuer = url
		res := d.Revoke(context.Background(), revoke.Job{Subject: jane})
		api.mu.Lock()
		if res.Class != c.want || len(api.calls) != c.calls || len(api.problems) > 0 {
			t.Errorf("sessions %d grants %d: class %s (%v), calls %v, problems %v", c.sessions, c.grants, res.Class, res.Err, api.calls, api.problems)
		}
		if c.sessions == 429 && res.RetryAfter < 20*time.Second {
			t.Errorf("429: X-Rate-Limit-Reset not carried (%s)", res.RetryAfter)
		}
		api.mu.Unlock()
	}
}

// Okta's SDKs read OKTA_CLIENT_* variables (and ~/.okta/okta.yaml); a
// developer's own Okta settings must never redirect our calls.
func TestOktaDriverIgnoresAmbientConfig(t *testing.T) {
	t.Setenv("OKTA_CLIENT_ORGURL", "https://someone-elses.okta.com")
	t.Setenv("OKTA_CLIENT_TOKEN", "someone-elses-token")
	t.Setenv("OKTA_CLIENT_AUTHORIZATIONMODE", "PrivateKey")
	t.Setenv("OKTA_CLIENT_PROXY_HOST", "127.0.0.1")
	t.Setenv("OKTA_CLIENT_PROXY_PORT", "9")
	t.Setenv("OKTA_CLIENT_REQUEST_TIMEOUT", "1")
	t.Setenv("OKTA_CLIENT_RATE_LIMIT_MAX_RETRIES", "9")
	api := &oktaAPI{sessions: 204, grants: 204}
	d, url := driverFor(t, api)
	res := d.Revoke(context.Background(), revoke.Job{Subject: events.Subject{Issuer: url, ID: "00ujane"}})
	api.mu.Lock()
	defer api.mu.Unlock()
	if res.Class != revoke.Succeeded || len(api.calls) != 2 || len(api.problems) > 0 {
		t.Errorf("with ambient Okta settings: class %s (%v), calls %v, problems %v", res.Class, res.Err, api.calls, api.problems)
	}
}

// A subject whose login is a dot segment is refused before any call: a
// server or proxy resolving it would send the DELETE somewhere else.
func TestOktaDriverRefusesDotSegmentUsers(t *testing.T) {
	api := &oktaAPI{sessions: 204, grants: 204}
	d, _ := driverFor(t, api)
	for _, login := range []string{".", ".."} {
		res := d.Revoke(context.Background(), revoke.Job{Subject: events.Subject{Issuer: "https://other.example", ID: "00uother", Login: login}})
		if res.Class != revoke.Permanent || res.Err == nil {
			t.Errorf("login %q: class %s (%v)", login, res.Class, res.Err)
		}
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.calls) != 0 {
		t.Errorf("calls were made: %v", api.calls)
	}
}
