package scimpush

import (
	"net/http"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/revoketest"
)

func TestConformance(t *testing.T) {
	revoketest.Run(t, revoketest.Harness{Succeed: []int{200, 204}, NotApplicable: []int{404}, Secret: token, Tokens: true,
		Job: revoke.Job{ID: "e|t", EventID: "e", Target: "t", Subject: events.Subject{Email: "ann@corp.example"}},
		// The PATCH is under test; the lookup before it finds the user.
		Act: func(r *http.Request) bool { return r.Method == http.MethodPatch },
		Before: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/scim+json")
			_, _ = w.Write([]byte(`{"totalResults":1,"Resources":[{"id":"1001","active":true}]}`))
		},
		New: func(t *testing.T, base string, client *http.Client, tokens revoke.TokenSource) revoke.Driver {
			d, err := New(Config{Endpoint: base + "/scim/v2", Tokens: tokens, Client: client, Now: time.Now})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}})
}
