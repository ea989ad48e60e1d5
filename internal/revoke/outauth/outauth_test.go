package outauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/outauth"
)

// tokenEndpoint is an RFC 6749 token endpoint that authenticates the client
// by the method it expects and issues short-lived tokens.
type tokenEndpoint struct {
	mu       sync.Mutex
	method   string
	signer   *keys.Signer
	url      string
	issued   int
	problems []string
	now      func() time.Time
}

func (e *tokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = r.ParseForm()
	bad := func(s string) {
		e.problems = append(e.problems, s)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(401)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
	}
	if r.Method != http.MethodPost || r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("scope") != "revoke" {
		bad("request: " + r.Method + " " + r.PostForm.Encode())
		return
	}
	switch e.method {
	case outauth.ClientSecretBasic:
		id, secret, ok := r.BasicAuth()
		if !ok || id != "svc%3Aclient" || secret != "s3cret%2Fvalue" || r.PostForm.Has("client_secret") {
			bad("basic auth")
			return
		}
	case outauth.ClientSecretPost:
		if r.PostForm.Get("client_id") != "svc:client" || r.PostForm.Get("client_secret") != "s3cret/value" || r.Header.Get("Authorization") != "" {
			bad("post auth")
			return
		}
	case outauth.PrivateKeyJWT:
		if r.PostForm.Get("client_assertion_type") != outauth.AssertionType {
			bad("assertion type")
			return
		}
		tok, err := jwt.ParseSigned(r.PostForm.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			bad("assertion: " + err.Error())
			return
		}
		k := e.signer.JWK()
		var cl jwt.Claims
		if err := tok.Claims(k.Public().Key, &cl); err != nil {
			bad("assertion signature")
			return
		}
		if err := cl.Validate(jwt.Expected{Issuer: "svc:client", Subject: "svc:client", AnyAudience: jwt.Audience{e.url}, Time: e.now()}); err != nil || cl.ID == "" {
			bad("assertion claims")
			return
		}
	}
	e.issued++
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + string(rune('0'+e.issued)), "token_type": "Bearer", "expires_in": 600})
}

func TestClientCredentials(t *testing.T) {
	signer, err := keys.LoadOrCreate(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{outauth.ClientSecretBasic, outauth.ClientSecretPost, outauth.PrivateKeyJWT} {
		ep := &tokenEndpoint{method: method, signer: signer}
		srv := httptest.NewServer(ep)
		ep.url = srv.URL + "/token"
		now := time.Now()
		ep.now = func() time.Time { return now }
		cc := &outauth.ClientCredentials{TokenURL: ep.url, ClientID: "svc:client", Secret: "s3cret/value", Method: method, Scope: "revoke",
			Signer: signer, Client: srv.Client(), Now: func() time.Time { return now }}
		if err := cc.Validate(); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			tok, err := cc.Token(context.Background())
			if err != nil || tok != "at-1" {
				t.Fatalf("%s: %q %v (endpoint: %v)", method, tok, err, ep.problems)
			}
		}
		now = now.Add(10 * time.Minute) // expired: a new one
		if tok, err := cc.Token(context.Background()); err != nil || tok != "at-2" {
			t.Errorf("%s after expiry: %q %v", method, tok, err)
		}
		if ep.issued != 2 || len(ep.problems) > 0 {
			t.Errorf("%s: %d tokens issued (want 2: cached, then renewed), problems %v", method, ep.issued, ep.problems)
		}
		srv.Close()
	}
}

func TestBadCredentialsArePermanent(t *testing.T) {
	ep := &tokenEndpoint{method: outauth.ClientSecretPost}
	srv := httptest.NewServer(ep)
	defer srv.Close()
	cc := &outauth.ClientCredentials{TokenURL: srv.URL, ClientID: "svc:client", Secret: "wrong", Method: outauth.ClientSecretPost, Scope: "revoke",
		Client: srv.Client(), Now: time.Now}
	_, err := cc.Token(context.Background())
	var te *outauth.TokenError
	if !errors.As(err, &te) || !te.Permanent() || te.Code != "invalid_client" {
		t.Fatalf("err %v, want a permanent invalid_client", err)
	}
}
