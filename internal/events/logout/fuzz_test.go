package logout

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events/eventstest"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/logout/logouttest"
)

// Any token and body: never a crash; nothing unsigned by the issuer is
// taken; a body under a valid token is taken (204) or refused with 400.
func FuzzLogoutRequest(f *testing.F) {
	okta := logouttest.Okta(f)
	valid := okta.Token(f, okta.Claims(endpoint), TokenType)
	f.Add(valid, `{"sub_id":{"format":"email","email":"a@x"}}`)
	f.Add(valid, `{"subject":{"format":"iss_sub","iss":"https://i","sub":"s"}}`)
	f.Add(valid, `{"sub_id":{"format":"aliases","identifiers":[{"format":"opaque","id":"1"}]}}`)
	f.Add("eyJhbGciOiJub25lIn0.e30.", `{}`)
	f.Add("a.b.c", `null`)
	f.Fuzz(func(t *testing.T, token, body string) {
		m := &eventstest.Broker{}
		r := receiver(t, m, issuerOf(okta))
		req := httptest.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := serve(r, req)
		switch {
		case rec.Code == http.StatusNoContent:
			if token != valid || len(m.Events) != 1 {
				t.Fatalf("taken: token %q, %d events", token, len(m.Events))
			}
		case token == valid && rec.Code != http.StatusBadRequest && rec.Code != http.StatusUnauthorized:
			t.Fatalf("a valid token with body %q: %d %s", body, rec.Code, rec.Body)
		case len(m.Events) != 0:
			t.Fatalf("refused %d, yet published", rec.Code)
		}
	})
}
