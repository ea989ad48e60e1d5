package backchannel_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/backchannel"
)

// rp is a back-channel logout endpoint that validates as BCL 1.0 §2.6 says
// and answers status.
func rp(t *testing.T, signer *keys.Signer, status int) (*httptest.Server, *[]string) {
	var problems []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad := func(s string) { problems = append(problems, s) }
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			bad("method/content type: " + r.Method + " " + r.Header.Get("Content-Type"))
		}
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		tok, err := jwt.ParseSigned(form.Get("logout_token"), []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			bad("not a JWS: " + err.Error())
			w.WriteHeader(400)
			return
		}
		if typ := tok.Headers[0].ExtraHeaders["typ"]; typ != "logout+jwt" {
			bad("typ " + typ.(string))
		}
		var cl jwt.Claims
		var extra map[string]any
		if err := tok.Claims(pub(signer), &cl, &extra); err != nil {
			bad("signature: " + err.Error())
		}
		if err := cl.Validate(jwt.Expected{Issuer: "https://lw.example", AnyAudience: jwt.Audience{"mcp-as-client"}, Time: time.Now()}); err != nil {
			bad("claims: " + err.Error())
		}
		if cl.ID == "" || cl.IssuedAt == nil || cl.Expiry == nil || cl.Subject != "00ujane" {
			bad("jti/iat/exp/sub missing or wrong")
		}
		ev, _ := extra["events"].(map[string]any)
		if _, ok := ev[backchannel.EventURI]; !ok || len(ev) != 1 {
			bad("events member")
		}
		if _, ok := extra["nonce"]; ok {
			bad("nonce present")
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, &problems
}

func TestLogoutToken(t *testing.T) {
	signer, err := keys.LoadOrCreate(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for status, want := range map[int]revoke.Class{200: revoke.Succeeded, 204: revoke.Succeeded, 400: revoke.Permanent, 503: revoke.Retry, 401: revoke.Permanent} {
		srv, problems := rp(t, signer, status)
		d, err := backchannel.New(backchannel.Config{Endpoint: srv.URL, Audience: "mcp-as-client", SubjectFormat: "iss_sub",
			Issuer: "https://lw.example", Signer: signer, Client: srv.Client(), Now: time.Now})
		if err != nil {
			t.Fatal(err)
		}
		res := d.Revoke(context.Background(), revoke.Job{Subject: events.Subject{Issuer: "https://acme.okta.com", ID: "00ujane"}})
		if res.Class != want || len(*problems) > 0 {
			t.Errorf("HTTP %d: class %s, RP found %v", status, res.Class, *problems)
		}
	}
}

func pub(s *keys.Signer) any {
	k := s.JWK()
	return k.Public().Key
}
