package backchannel

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
	// OIDC Back-Channel Logout 1.0 §2.8: 200 (or 204) is success; there is
	// no "unknown user" answer, so a 404 is a misconfiguration.
	revoketest.Run(t, revoketest.Harness{Succeed: []int{200, 204},
		Job: revoke.Job{ID: "e|t", EventID: "e", Target: "t", Subject: events.Subject{Issuer: "https://idp.example", ID: "00u1", Email: "a@example.com"}},
		Act: func(r *http.Request) bool { return r.Method == http.MethodPost },
		New: func(t *testing.T, base string, client *http.Client, _ revoke.TokenSource) revoke.Driver {
			d, err := New(Config{Endpoint: base + "/logout", Audience: "rp", SubjectFormat: "iss_sub", Issuer: "https://lw.example",
				Signer: signer, Client: client, Now: time.Now})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}})
}
