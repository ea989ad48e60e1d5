package logout

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/eventstest"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/logout/logouttest"
	"github.com/lifecycle-worker/lifecycle-worker/internal/jwks"
)

const endpoint = "https://lw.example/global-token-revocation"

// memReplays is the replay store in memory.
type memReplays struct {
	mu sync.Mutex
	m  map[string]string
}

func (r *memReplays) Claim(_ context.Context, key, subject string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]string{}
	}
	if first, ok := r.m[key]; ok {
		return first, nil
	}
	r.m[key] = subject
	return subject, nil
}

func receiver(t *testing.T, m *eventstest.Broker, issuers ...Issuer) *Receiver {
	t.Helper()
	r, err := New(Config{Issuers: issuers, Audience: []string{endpoint}, MaxBody: 64 << 10, PublishTimeout: time.Second,
		Publisher: m, Recorder: m, Replays: &memReplays{}, Now: time.Now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// issuerOf trusts idp, finding its keys through its metadata.
func issuerOf(idp *logouttest.IdP) Issuer {
	return Issuer{Issuer: idp.Issuer, Keys: jwks.Discovered(idp.Issuer, idp.Server.Client(), time.Now, time.Minute,
		func(u string) error { return config.CheckEndpoint(u, true) })}
}

func serve(r http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	return rec
}

var jane = map[string]any{"format": "email", "email": "jane@example.com"}

// A Universal Logout request as Okta sends it, and one as Auth0 sends it,
// become one sessions_revoked event each, durable before the 204; the
// IdP's retry of the same request is answered 204 again and revokes once.
func TestUniversalLogoutFromOktaAndAuth0(t *testing.T) {
	okta, auth0 := logouttest.Okta(t), logouttest.Auth0(t)
	m := &eventstest.Broker{}
	r := receiver(t, m, issuerOf(okta), issuerOf(auth0))

	req := okta.Request(t, endpoint, jane)
	retry := req.Clone(context.Background())
	retry.Body = okta.Request(t, endpoint, jane).Body
	if rec := serve(r, req); rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
		t.Fatalf("okta: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(r, retry); rec.Code != http.StatusNoContent {
		t.Fatalf("okta retry: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(r, auth0.Request(t, endpoint, map[string]any{"format": "iss_sub", "iss": auth0.Issuer, "sub": "auth0|42"})); rec.Code != http.StatusNoContent {
		t.Fatalf("auth0: %d %s", rec.Code, rec.Body)
	}
	if len(m.Events) != 2 {
		t.Fatalf("%d events, want one per logout", len(m.Events))
	}
	ev := m.Events[0]
	if ev.Kind != events.KindSessionsRevoked || ev.Source != events.SourceLogout || ev.Subject.Email != "jane@example.com" ||
		!strings.HasPrefix(ev.ID, "gtr:"+okta.Issuer+":") || ev.Cause != "Universal Logout from "+okta.Issuer+" (app "+okta.ClientID+")" {
		t.Errorf("okta event %+v", ev)
	}
	if strings.Contains(string(ev.Raw), "eyJ") {
		t.Error("the event keeps the bearer token")
	}
	if ev := m.Events[1]; ev.Subject.Issuer != auth0.Issuer || ev.Subject.ID != "auth0|42" {
		t.Errorf("auth0 event %+v", ev)
	}
	if len(m.Records) != 1 || m.Records[0].Outcome != audit.OutcomeDuplicate {
		t.Errorf("records %+v, want the retry's duplicate receipt", m.Records)
	}
	if n := okta.KeyFetches.Load(); n != 1 {
		t.Errorf("%d key fetches, want 1", n)
	}
}

// Every way a request can be wrong gets the draft's status, a record, and no
// event: 401 for authentication (auth.failed), 403 for a caller that may
// not, 400 for the body (event.rejected), 503 when it cannot be made
// durable.
func TestUniversalLogoutRefusals(t *testing.T) {
	okta := logouttest.Okta(t)
	other := logouttest.Okta(t) // an IdP we do not trust
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sign := func(claims map[string]any, alg jose.SignatureAlgorithm, key any, typ string) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", okta.KeyID))
		if err != nil {
			t.Fatal(err)
		}
		p, _ := json.Marshal(claims)
		o, _ := s.Sign(p)
		out, _ := o.CompactSerialize()
		return out
	}
	claims := func(mut func(map[string]any)) map[string]any {
		c := okta.Claims(endpoint)
		if mut != nil {
			mut(c)
		}
		return c
	}
	good := func(mut func(map[string]any)) string { return okta.Token(t, claims(mut), TokenType) }
	for _, c := range []struct {
		name, token, body string
		status            int
		typ               audit.Type
	}{
		{"no token", "", `{"sub_id":{"format":"email","email":"a@x"}}`, 401, audit.TypeAuthFailed},
		{"not a JWT", "Bearer abc", `{}`, 401, audit.TypeAuthFailed},
		{"alg none", "Bearer eyJhbGciOiJub25lIiwidHlwIjoiZ2xvYmFsLXRva2VuLXJldm9jYXRpb24rand0In0.eyJpc3MiOiJ4In0.", `{}`, 401, audit.TypeAuthFailed},
		{"HS256", "Bearer " + sign(claims(nil), jose.HS256, []byte("0123456789abcdef0123456789abcdef"), TokenType), `{}`, 401, audit.TypeAuthFailed},
		{"unknown issuer", "Bearer " + other.Token(t, other.Claims(endpoint), TokenType), `{}`, 401, audit.TypeAuthFailed},
		{"wrong key", "Bearer " + sign(claims(nil), jose.ES256, ecKey, TokenType), `{}`, 401, audit.TypeAuthFailed},
		{"expired", "Bearer " + good(func(c map[string]any) { c["exp"] = time.Now().Add(-10 * time.Minute).Unix() }), `{}`, 401, audit.TypeAuthFailed},
		{"no exp", "Bearer " + good(func(c map[string]any) { delete(c, "exp") }), `{}`, 401, audit.TypeAuthFailed},
		{"lives a day", "Bearer " + good(func(c map[string]any) { c["exp"] = time.Now().Add(24 * time.Hour).Unix() }), `{}`, 401, audit.TypeAuthFailed},
		{"not yet", "Bearer " + good(func(c map[string]any) { c["nbf"] = time.Now().Add(10 * time.Minute).Unix() }), `{}`, 401, audit.TypeAuthFailed},
		{"wrong aud", "Bearer " + good(func(c map[string]any) { c["aud"] = "https://other.example/global-token-revocation" }), `{}`, 401, audit.TypeAuthFailed},
		{"aud with query", "Bearer " + good(func(c map[string]any) { c["aud"] = endpoint + "?x=1" }), `{}`, 401, audit.TypeAuthFailed},
		{"no jti", "Bearer " + good(func(c map[string]any) { delete(c, "jti") }), `{}`, 401, audit.TypeAuthFailed},
		{"typ of a SET", "Bearer " + okta.Token(t, claims(nil), "secevent+jwt"), `{}`, 401, audit.TypeAuthFailed},
		{"typ JWT (not allowed)", "Bearer " + okta.Token(t, claims(nil), "JWT"), `{}`, 401, audit.TypeAuthFailed},
		{"no body", "Bearer " + good(nil), ``, 400, audit.TypeEventRejected},
		{"no sub_id", "Bearer " + good(nil), `{"user":"a@x"}`, 400, audit.TypeEventRejected},
		{"unknown format", "Bearer " + good(nil), `{"sub_id":{"format":"uid","id":"breakfast"}}`, 400, audit.TypeEventRejected},
		{"email without a value", "Bearer " + good(nil), `{"sub_id":{"format":"email"}}`, 400, audit.TypeEventRejected},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &eventstest.Broker{}
			r := receiver(t, m, issuerOf(okta))
			req := httptest.NewRequest(http.MethodPost, endpoint, strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/json")
			if c.token != "" {
				req.Header.Set("Authorization", c.token)
			}
			rec := serve(r, req)
			if rec.Code != c.status {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, c.status)
			}
			if len(m.Events) != 0 {
				t.Errorf("refused, yet published %v", m.Events)
			}
			if len(m.Records) != 1 || m.Records[0].Type != c.typ || m.Records[0].HTTPStatus != c.status || m.Records[0].Source != "universal-logout" {
				t.Errorf("records %+v, want one %s", m.Records, c.typ)
			}
			if (c.status == 401) != (rec.Header().Get("WWW-Authenticate") != "") {
				t.Errorf("WWW-Authenticate %q on a %d", rec.Header().Get("WWW-Authenticate"), c.status)
			}
		})
	}
}

// A captured request replayed with another subject is refused: one jti,
// one subject, whatever the body says.
func TestJTIReplayedForAnotherSubject(t *testing.T) {
	okta := logouttest.Okta(t)
	m := &eventstest.Broker{}
	r := receiver(t, m, issuerOf(okta))
	token := "Bearer " + okta.Token(t, okta.Claims(endpoint), TokenType)
	for i, c := range []struct {
		email  string
		status int
	}{{"a@x.example", 204}, {"ceo@x.example", 401}, {"a@x.example", 204}} {
		req := httptest.NewRequest(http.MethodPost, endpoint, bytes.NewReader(okta.Body(map[string]any{"format": "email", "email": c.email})))
		req.Header.Set("Authorization", token)
		if rec := serve(r, req); rec.Code != c.status {
			t.Errorf("request %d for %s: %d %s, want %d", i, c.email, rec.Code, rec.Body, c.status)
		}
	}
	if len(m.Events) != 1 || m.Events[0].Subject.Email != "a@x.example" {
		t.Errorf("events %+v, want a@x's only", m.Events)
	}
}

// A caller the issuer's clients do not list gets 403; typ JWT is taken
// where the issuer allows untyped tokens; a broker that cannot take the
// event makes it 503 (the IdP retries).
func TestCallersUntypedAndNotDurable(t *testing.T) {
	okta := logouttest.Okta(t)
	is := issuerOf(okta)
	is.Clients = []string{"0oaSomeOtherApp"}
	m := &eventstest.Broker{}
	if rec := serve(receiver(t, m, is), okta.Request(t, endpoint, jane)); rec.Code != http.StatusForbidden || len(m.Records) != 1 || m.Records[0].Type != audit.TypeAuthFailed {
		t.Errorf("another app's caller: %d, records %+v", rec.Code, m.Records)
	}
	is.Clients, is.Untyped = nil, true
	untyped := okta.Request(t, endpoint, jane)
	untyped.Header.Set("Authorization", "Bearer "+okta.Token(t, okta.Claims(endpoint), "JWT"))
	if rec := serve(receiver(t, m, is), untyped); rec.Code != http.StatusNoContent {
		t.Errorf("typ JWT where allowed: %d %s", rec.Code, rec.Body)
	}
	m = &eventstest.Broker{Fail: true}
	if rec := serve(receiver(t, m, issuerOf(okta)), okta.Request(t, endpoint, jane)); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("broker down: %d", rec.Code)
	}
	var body bytes.Buffer
	body.WriteString(strings.Repeat(" ", 70<<10))
	big := okta.Request(t, endpoint, jane)
	big.Body = httptest.NewRequest(http.MethodPost, endpoint, &body).Body
	if rec := serve(receiver(t, &eventstest.Broker{}, issuerOf(okta)), big); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("a 70 KB body: %d", rec.Code)
	}
}
