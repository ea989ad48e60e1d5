// Package revoketest is the conformance suite every revocation driver
// passes: each answer a target can give is classified as the architecture
// says (docs/architecture.md, Answer classes), Retry-After is honoured, a
// timeout is retried, a failed token fetch is classified, a redirect is
// never followed, and no secret — ours or one the target echoes back —
// appears in an error or a record's detail.
package revoketest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Harness describes a driver to the suite.
type Harness struct {
	// New builds the driver aimed at base (a loopback server the suite
	// runs), with the HTTP client and token source to use (tokens is nil
	// for drivers that take none).
	New func(t *testing.T, base string, client *http.Client, tokens revoke.TokenSource) revoke.Driver
	// Job is a job the driver can act on.
	Job revoke.Job
	// Act tells the request that carries the revocation from those the
	// driver makes before it (a lookup), which Before answers.
	Act    func(r *http.Request) bool
	Before http.HandlerFunc
	// Succeed are the statuses of the act request that mean revoked;
	// NotApplicable those that mean "no such subject here".
	Succeed, NotApplicable []int
	// Secret is a credential the driver sends (a token, a key): it must
	// appear in no error and no detail. Tokens: the driver takes a token
	// source (its failures are then checked too).
	Secret string
	Tokens bool
	// RateLimit is how the target says "wait" on a 429, when not with
	// Retry-After (Okta: X-Rate-Limit-Reset); such a driver is not asked
	// to read Retry-After on a 503 either.
	RateLimit func(wait time.Duration) http.Header
}

// secretTokens is a token source that returns the harness's secret, or
// fails as told.
type secretTokens struct {
	secret string
	err    error
}

func (s secretTokens) Token(context.Context) (string, error) { return s.secret, s.err }

type permanentErr struct{}

func (permanentErr) Error() string   { return "token endpoint answered HTTP 401 invalid_client" }
func (permanentErr) Permanent() bool { return true }

type transientErr struct{}

func (transientErr) Error() string { return "token endpoint answered HTTP 503" }

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Helper()
	type answer struct {
		status int
		header http.Header
		body   string
		delay  time.Duration
	}
	var current atomic.Pointer[answer]
	var redirected atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		redirected.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer elsewhere.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.Act(r) {
			h.Before(w, r)
			return
		}
		a := current.Load()
		if a.delay > 0 {
			select {
			case <-time.After(a.delay):
			case <-r.Context().Done():
				return
			}
		}
		for k, v := range a.header {
			w.Header()[k] = v
		}
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(a.body))
	}))
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var tokens revoke.TokenSource
	if h.Tokens {
		tokens = secretTokens{secret: h.Secret}
	}
	drv := h.New(t, srv.URL, client, tokens)
	revokeWith := func(a answer, timeout time.Duration) revoke.Result {
		current.Store(&a)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return drv.Revoke(ctx, h.Job)
	}
	// noSecret checks a result as the executor records it: errors and
	// detail with the target's configured secrets redacted, and anything
	// JWT-shaped the target echoed back cut out by the driver.
	noSecret := func(t *testing.T, r revoke.Result) {
		t.Helper()
		detail, _ := json.Marshal(r.Detail)
		detailText := revoke.Redact(string(detail), []string{h.Secret})
		errText := ""
		if r.Err != nil {
			errText = revoke.Redact(r.Err.Error(), []string{h.Secret})
			if strings.Contains(r.Err.Error(), "c2lnbmF0dXJlLWVjaG8") {
				t.Errorf("the driver's error carries the echoed JWT: %v", r.Err)
			}
		}
		for _, where := range []string{errText, detailText} {
			if h.Secret != "" && strings.Contains(where, h.Secret) {
				t.Errorf("the secret is in %q", where)
			}
		}
	}
	classes := map[int]revoke.Class{400: revoke.Permanent, 401: revoke.Permanent, 403: revoke.Permanent, 409: revoke.Permanent,
		422: revoke.Permanent, 429: revoke.Retry, 500: revoke.Retry, 502: revoke.Retry, 503: revoke.Retry, 504: revoke.Retry}
	for _, s := range h.Succeed {
		classes[s] = revoke.Succeeded
	}
	for _, s := range h.NotApplicable {
		classes[s] = revoke.NotApplicable
	}
	if _, ok := classes[404]; !ok {
		classes[404] = revoke.Permanent
	}
	t.Run("status to class", func(t *testing.T) {
		for status, want := range classes {
			// The target echoes what it was sent, bearer included: nothing
			// of it may reach the trail.
			r := revokeWith(answer{status: status, body: `{"error":"x","echo":"` + h.Secret + ` eyJhbGciOiJFUzI1NiJ9.eyJlY2hvLSI6MX0.c2lnbmF0dXJlLWVjaG8-"}`}, 5*time.Second)
			if r.Class != want {
				t.Errorf("HTTP %d: %v (%v), want %v", status, r.Class, r.Err, want)
			}
			if want != revoke.Succeeded && want != revoke.NotApplicable && r.HTTPStatus != status {
				t.Errorf("HTTP %d: result carries status %d", status, r.HTTPStatus)
			}
			noSecret(t, r)
		}
	})
	t.Run("Retry-After", func(t *testing.T) {
		hdr := http.Header{"Retry-After": {"7"}}
		if h.RateLimit != nil {
			hdr = h.RateLimit(7 * time.Second)
		}
		r := revokeWith(answer{status: 429, header: hdr}, 5*time.Second)
		if r.Class != revoke.Retry || r.RetryAfter < 5*time.Second || r.RetryAfter > 7*time.Second {
			t.Errorf("429 asking for 7s → %v %v", r.Class, r.RetryAfter)
		}
		if h.RateLimit != nil {
			return
		}
		when := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
		r = revokeWith(answer{status: 503, header: http.Header{"Retry-After": {when}}}, 5*time.Second)
		if r.Class != revoke.Retry || r.RetryAfter < 60*time.Second || r.RetryAfter > 91*time.Second {
			t.Errorf("503 Retry-After: <date> → %v %v", r.Class, r.RetryAfter)
		}
	})
	t.Run("timeout is retried", func(t *testing.T) {
		r := revokeWith(answer{status: 204, delay: time.Second}, 200*time.Millisecond)
		if r.Class != revoke.Retry {
			t.Errorf("a target slower than the timeout: %v %v", r.Class, r.Err)
		}
	})
	t.Run("redirect not followed", func(t *testing.T) {
		for _, code := range []int{301, 302, 307, 308} {
			r := revokeWith(answer{status: code, header: http.Header{"Location": {elsewhere.URL + "/steal"}}}, 5*time.Second)
			if r.Class == revoke.Succeeded || r.Class == revoke.NotApplicable {
				t.Errorf("HTTP %d redirect: %v", code, r.Class)
			}
		}
		if n := redirected.Load(); n != 0 {
			t.Errorf("%d requests followed a redirect", n)
		}
	})
	if h.Tokens {
		t.Run("token errors", func(t *testing.T) {
			for err, want := range map[error]revoke.Class{permanentErr{}: revoke.Permanent, transientErr{}: revoke.Retry} {
				d := h.New(t, srv.URL, client, secretTokens{err: err})
				current.Store(&answer{status: 204})
				r := d.Revoke(context.Background(), h.Job)
				if r.Class != want {
					t.Errorf("token source failing with %q: %v, want %v", err, r.Class, want)
				}
				noSecret(t, r)
			}
		})
	}
}
