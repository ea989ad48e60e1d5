// Package logouttest has IdPs that send Universal Logout requests the way
// the real ones document them, for tests: an Okta org (RS256 with the key
// that signs its ID tokens, kid from the JWKS at /oauth2/v1/keys found
// through /.well-known/openid-configuration; claims jti, iss, sub = the
// app's client id, aud = the endpoint, exp +5 min, nbf −5 min, iat; typ
// global-token-revocation+jwt; body {"sub_id": …}) and an Auth0 tenant
// (issuer with a trailing slash, keys at /.well-known/jwks.json, body in
// the draft's older {"subject": …} spelling).
package logouttest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
)

// IdP is a Universal Logout sender with its discovery metadata and keys
// served over HTTP.
type IdP struct {
	Server   *httptest.Server
	Issuer   string
	ClientID string
	Key      *rsa.PrivateKey
	KeyID    string
	auth0    bool
	// KeyFetches counts GETs of the JWKS.
	KeyFetches atomic.Int32
}

// Okta returns an Okta-style IdP.
func Okta(t testing.TB) *IdP { return newIdP(t, false) }

// Auth0 returns an Auth0-style IdP.
func Auth0(t testing.TB) *IdP { return newIdP(t, true) }

func newIdP(t testing.TB, auth0 bool) *IdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &IdP{Key: key, KeyID: "idp-key-" + uuid.NewString()[:8], ClientID: "0oa1b2c3d4e5f6g7h8i9", auth0: auth0}
	keysPath := "/oauth2/v1/keys"
	if auth0 {
		keysPath, p.ClientID = "/.well-known/jwks.json", "aB3dE5fG7hI9jK1lM3nO5pQ7"
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.Issuer, "jwks_uri": p.Server.URL + keysPath,
				"authorization_endpoint": p.Server.URL + "/authorize", "id_token_signing_alg_values_supported": []string{"RS256"}})
		case keysPath:
			p.KeyFetches.Add(1)
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.Key.PublicKey, KeyID: p.KeyID, Algorithm: "RS256", Use: "sig"}}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.Server.Close)
	p.Issuer = p.Server.URL
	if auth0 {
		p.Issuer += "/"
	}
	return p
}

// Claims are an Okta Universal Logout JWT's claims for endpoint.
func (p *IdP) Claims(endpoint string) map[string]any {
	now := time.Now()
	return map[string]any{"jti": uuid.NewString(), "iss": p.Issuer, "sub": p.ClientID, "aud": endpoint,
		"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-5 * time.Minute).Unix(), "iat": now.Unix()}
}

// Token signs claims with the IdP's key; typ and kid as given ("" leaves
// typ out; kid "" uses the IdP's).
func (p *IdP) Token(t testing.TB, claims map[string]any, typ string) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", p.KeyID)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.Key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := obj.CompactSerialize()
	return out
}

// Body is the request body naming subID, in this IdP's spelling.
func (p *IdP) Body(subID map[string]any) []byte {
	key := "sub_id"
	if p.auth0 {
		key = "subject"
	}
	b, _ := json.Marshal(map[string]any{key: subID})
	return b
}

// Request is a complete Universal Logout request to endpoint for subID.
func (p *IdP) Request(t testing.TB, endpoint string, subID map[string]any) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(p.Body(subID)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.Token(t, p.Claims(strings.SplitN(endpoint, "?", 2)[0]), "global-token-revocation+jwt"))
	return req
}
