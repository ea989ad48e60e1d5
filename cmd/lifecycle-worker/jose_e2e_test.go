package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Every kind of JWT we emit — the GTR bearer, the back-channel logout token
// (signed with ES256, RS256 or EdDSA as each target asks),
// the SET and the client assertion of private_key_jwt — verifies with an independent implementation, npm jose
// (jwtVerify with the expected typ, iss and aud), against our JWKS fetched
// over HTTP. CI installs the package (npm ci in test/jose).
func TestJWTsVerifyWithJose(t *testing.T) {
	joseDir, _ := filepath.Abs("../../test/jose")
	if _, err := os.Stat(filepath.Join(joseDir, "node_modules", "jose")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("npm jose is not installed in %s (run npm ci there): %v", joseDir, err)
		}
		t.Skip("npm jose not installed: run `npm ci --prefix test/jose`")
	}
	var mu sync.Mutex
	captured := map[string]string{}
	capture := func(name string, status int, extract func(*http.Request, []byte) string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			captured[name] = extract(r, body)
			mu.Unlock()
			w.WriteHeader(status)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	gtrSrv := capture("gtr", 204, func(r *http.Request, _ []byte) string {
		return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	})
	bclSrv := capture("backchannel", 200, func(_ *http.Request, b []byte) string {
		v, _ := url.ParseQuery(string(b))
		return v.Get("logout_token")
	})
	// Relying parties that accept only RS256 (most libraries' default) or
	// only EdDSA: targets ask for those algorithms.
	bclRS := capture("backchannel-rs256", 200, func(_ *http.Request, b []byte) string {
		v, _ := url.ParseQuery(string(b))
		return v.Get("logout_token")
	})
	bclEd := capture("backchannel-eddsa", 200, func(_ *http.Request, b []byte) string {
		v, _ := url.ParseQuery(string(b))
		return v.Get("logout_token")
	})
	ssfSrv := capture("ssf", 202, func(_ *http.Request, b []byte) string { return string(b) })
	// A token endpoint for a target using client credentials with
	// private_key_jwt: the client assertion is the fourth kind of JWT.
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		captured["assertion"] = r.PostForm.Get("client_assertion")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"at-1","token_type":"Bearer","expires_in":300}`))
	}))
	t.Cleanup(tokenSrv.Close)
	ccSrv := capture("cc-gtr", 204, func(r *http.Request, _ []byte) string { return r.Header.Get("Authorization") })

	targets := gtrTarget("gtr", gtrSrv.URL+"/global-token-revocation", "email") +
		"  - { name: bcl, driver: backchannel, endpoint: " + bclSrv.URL + "/logout, audience: mcp-as-client, subject_format: iss_sub, allow_insecure_http: true }\n" +
		"  - { name: bcl-rs, driver: backchannel, endpoint: " + bclRS.URL + "/logout, audience: rs-client, subject_format: iss_sub, allow_insecure_http: true, signing_alg: RS256 }\n" +
		"  - { name: bcl-ed, driver: backchannel, endpoint: " + bclEd.URL + "/logout, audience: ed-client, subject_format: iss_sub, allow_insecure_http: true, signing_alg: EdDSA }\n" +
		"  - { name: ssf, driver: ssfpush, endpoint: " + ssfSrv.URL + "/events, audience: https://receiver.example, allow_insecure_http: true }\n" +
		"  - { name: cc, driver: gtr, endpoint: " + ccSrv.URL + "/gtr, allow_insecure_http: true,\n" +
		"      auth: { type: client_credentials, token_url: " + tokenSrv.URL + "/token, client_id: lw-client, method: private_key_jwt } }\n"
	w := startWorker(t, testConfig(t, t.TempDir(), targets))
	w.postHook(deactivation("jose", "jane@example.com"), testHookSecret)
	eventually(t, 30*time.Second, "six tokens captured", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(captured) == 7
	})
	if captured["cc-gtr"] != "Bearer at-1" {
		t.Errorf("the client-credentials target sent %q, not the issued access token", captured["cc-gtr"])
	}

	mu.Lock()
	input := map[string]any{"jwks": w.jwksURL(), "tokens": []map[string]string{
		{"name": "gtr bearer", "token": captured["gtr"], "typ": "global-token-revocation+jwt", "iss": testPublicURL, "aud": gtrSrv.URL + "/global-token-revocation"},
		{"name": "logout token", "token": captured["backchannel"], "typ": "logout+jwt", "iss": testPublicURL, "aud": "mcp-as-client", "alg": "ES256"},
		{"name": "logout token RS256", "token": captured["backchannel-rs256"], "typ": "logout+jwt", "iss": testPublicURL, "aud": "rs-client", "alg": "RS256"},
		{"name": "logout token EdDSA", "token": captured["backchannel-eddsa"], "typ": "logout+jwt", "iss": testPublicURL, "aud": "ed-client", "alg": "EdDSA"},
		{"name": "SET", "token": captured["ssf"], "typ": "secevent+jwt", "iss": testPublicURL, "aud": "https://receiver.example"},
		{"name": "client assertion", "token": captured["assertion"], "typ": "JWT", "iss": "lw-client", "aud": tokenSrv.URL + "/token"},
	}}
	mu.Unlock()
	in, _ := json.Marshal(input)
	cmd := exec.Command("node", filepath.Join(joseDir, "verify.mjs"))
	cmd.Dir = joseDir
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	t.Logf("jose:\n%s", out)
	if err != nil {
		t.Fatalf("jose rejected a token: %v", err)
	}
	if strings.Count(string(out), "ok ") != 6 {
		t.Errorf("want six verified tokens")
	}
	// Our discovery document names the algorithms, for relying parties
	// configured with our URL alone.
	resp, err := http.Get(w.url + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disco struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&disco)
	resp.Body.Close()
	if disco.Issuer != testPublicURL || disco.JWKSURI != testPublicURL+"/.well-known/jwks.json" || strings.Join(disco.Algs, ",") != "ES256,EdDSA,RS256" {
		t.Errorf("openid-configuration: %+v", disco)
	}
}
