package gtr

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/revoketest"
)

func TestConformance(t *testing.T) {
	signer, err := keys.LoadOrCreate(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	job := revoke.Job{ID: "e|t", EventID: "e", Target: "t", Subject: events.Subject{Email: "a@example.com"}}
	act := func(r *http.Request) bool { return r.Method == http.MethodPost }
	t.Run("signed_jwt", func(t *testing.T) {
		revoketest.Run(t, revoketest.Harness{Job: job, Act: act, Succeed: []int{200, 204}, NotApplicable: []int{404},
			New: func(t *testing.T, base string, client *http.Client, _ revoke.TokenSource) revoke.Driver {
				d, err := New(Config{Endpoint: base + "/gtr", SubjectFormat: "email", Auth: "signed_jwt", Signer: signer,
					Issuer: "https://lw.example", ClientID: "lw", Client: client, Now: time.Now})
				if err != nil {
					t.Fatal(err)
				}
				return d
			}})
	})
	t.Run("token", func(t *testing.T) {
		revoketest.Run(t, revoketest.Harness{Job: job, Act: act, Succeed: []int{200, 204}, NotApplicable: []int{404},
			Secret: "gtr-static-token-0123456789", Tokens: true,
			New: func(t *testing.T, base string, client *http.Client, tokens revoke.TokenSource) revoke.Driver {
				d, err := New(Config{Endpoint: base + "/gtr", SubjectFormat: "email", Auth: "token", Tokens: tokens, Client: client, Now: time.Now})
				if err != nil {
					t.Fatal(err)
				}
				return d
			}})
	})
}
