package httpcall

import (
	"net/http"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/revoketest"
)

func TestConformance(t *testing.T) {
	revoketest.Run(t, revoketest.Harness{Succeed: []int{204}, NotApplicable: []int{404}, Secret: "admin-api-token-0123456789", Tokens: true,
		Job: revoke.Job{ID: "e|t", EventID: "e", Target: "t", Subject: events.Subject{ID: "00u1", Email: "a@example.com"}},
		Act: func(r *http.Request) bool { return r.Method == http.MethodDelete },
		New: func(t *testing.T, base string, client *http.Client, tokens revoke.TokenSource) revoke.Driver {
			d, err := New(Config{Method: "DELETE", URL: base + "/admin/sessions?subject={{.Subject.ID}}", Success: []int{204}, NotApplicable: []int{404},
				Auth: "token", Tokens: tokens, AllowInsecureHTTP: true, Client: client, Now: time.Now})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}})
}
