package ssfpush_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/ssfpush"
)

// receiver is an RFC 8935 endpoint that validates SETs per SSF 1.0.
func receiver(t *testing.T, signer *keys.Signer, status int, body string) (*httptest.Server, *[]string, *[]string) {
	var problems, got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad := func(s string) { problems = append(problems, s) }
		if r.Header.Get("Content-Type") != "application/secevent+jwt" || r.Header.Get("Accept") != "application/json" {
			bad("headers")
		}
		raw, _ := io.ReadAll(r.Body)
		tok, err := jwt.ParseSigned(string(raw), []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			bad("not a JWS")
			w.WriteHeader(400)
			return
		}
		if typ := tok.Headers[0].ExtraHeaders["typ"]; typ != "secevent+jwt" {
			bad("typ")
		}
		var cl jwt.Claims
		var extra map[string]any
		if err := tok.Claims(pub(signer), &cl, &extra); err != nil {
			bad("signature")
		}
		if cl.Issuer != "https://lw.example" || !cl.Audience.Contains("https://receiver.example") || cl.ID == "" || cl.IssuedAt == nil {
			bad("iss/aud/jti/iat")
		}
		if cl.Subject != "" || cl.Expiry != nil {
			bad("sub or exp present (SSF forbids them)")
		}
		sid, _ := extra["sub_id"].(map[string]any)
		if sid["format"] != "email" || sid["email"] != "jane@example.com" {
			bad("sub_id")
		}
		evs, _ := extra["events"].(map[string]any)
		if len(evs) != 1 {
			bad("not exactly one event")
		}
		for uri := range evs {
			got = append(got, uri)
		}
		if extra["txn"] != "okta:e1" {
			bad("txn")
		}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &problems, &got
}

func TestSETPush(t *testing.T) {
	signer, err := keys.LoadOrCreate(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		kind   events.Kind
		status int
		body   string
		class  revoke.Class
		event  string
	}{
		{events.KindDeprovisioned, 202, "", revoke.Succeeded, ssfpush.AccountDisabled},
		{events.KindSessionsRevoked, 202, "", revoke.Succeeded, ssfpush.SessionRevoked},
		{events.KindDeprovisioned, 400, `{"err":"invalid_audience","description":"no such stream"}`, revoke.Permanent, ssfpush.AccountDisabled},
		{events.KindDeprovisioned, 503, "", revoke.Retry, ssfpush.AccountDisabled},
	}
	for _, c := range cases {
		srv, problems, got := receiver(t, signer, c.status, c.body)
		d, err := ssfpush.New(ssfpush.Config{Endpoint: srv.URL, Audience: "https://receiver.example", SubjectFormat: "email",
			Events: ssfpush.DefaultEvents(), Issuer: "https://lw.example", Signer: signer, Client: srv.Client(), Now: time.Now})
		if err != nil {
			t.Fatal(err)
		}
		res := d.Revoke(context.Background(), revoke.Job{EventID: "okta:e1", Kind: c.kind, Cause: "user.lifecycle.deactivate",
			OccurredAt: time.Now(), Subject: events.Subject{Email: "jane@example.com"}})
		if res.Class != c.class || len(*problems) > 0 || len(*got) != 1 || (*got)[0] != c.event {
			t.Errorf("%s → %d: class %s (%v), receiver found %v, events %v", c.kind, c.status, res.Class, res.Err, *problems, *got)
		}
		if c.status == 400 && (res.Err == nil || res.Err.Error() != "HTTP 400 invalid_audience: no such stream") {
			t.Errorf("400 error not carried: %v", res.Err)
		}
	}
}

func pub(s *keys.Signer) any {
	k := s.JWK()
	return k.Public().Key
}
