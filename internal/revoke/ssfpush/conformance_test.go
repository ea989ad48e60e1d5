package ssfpush

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
	// RFC 8935 §2: 202 Accepted is delivery; everything else is not.
	revoketest.Run(t, revoketest.Harness{Succeed: []int{202}, Secret: "ssf-receiver-token-0123456789", Tokens: true,
		Job: revoke.Job{ID: "e|t", EventID: "e", Target: "t", Kind: events.KindDeprovisioned, Subject: events.Subject{Email: "a@example.com"}},
		Act: func(r *http.Request) bool { return r.Method == http.MethodPost },
		New: func(t *testing.T, base string, client *http.Client, tokens revoke.TokenSource) revoke.Driver {
			d, err := New(Config{Endpoint: base + "/events", Audience: "https://rx.example", SubjectFormat: "email", Events: DefaultEvents(),
				Tokens: tokens, Issuer: "https://lw.example", Signer: signer, Client: client, Now: time.Now})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}})
}
