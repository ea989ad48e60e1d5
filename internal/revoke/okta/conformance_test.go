package okta_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/okta"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/revoketest"
)

func TestConformance(t *testing.T) {
	const token = "okta-api-token-0123456789"
	revoketest.Run(t, revoketest.Harness{Succeed: []int{200, 204}, NotApplicable: []int{404}, Secret: token,
		Job: revoke.Job{ID: "e|t", EventID: "e", Target: "t", Subject: events.Subject{ID: "00u1", Login: "a@example.com"}},
		// The sessions call is the one under test; the grants call after
		// it succeeds.
		Act:    func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/sessions") },
		Before: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) },
		// Okta says when to come back with X-Rate-Limit-Reset (epoch seconds).
		RateLimit: func(wait time.Duration) http.Header {
			return http.Header{"X-Rate-Limit-Reset": {strconv.FormatInt(time.Now().Add(wait).Unix(), 10)}}
		},
		New: func(t *testing.T, base string, client *http.Client, _ revoke.TokenSource) revoke.Driver {
			d, err := okta.New(okta.Config{OrgURL: base, Token: token, Client: client})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}})
}
