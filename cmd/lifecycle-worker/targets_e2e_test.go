package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// targets discover follows an MCP server's 401 to its protected resource
// metadata and its authorization server's RFC 8414 metadata, reports what
// it can do and prints a target config.
func TestTargetsDiscover(t *testing.T) {
	var as *httptest.Server
	as = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-authorization-server/tenant1" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": as.URL + "/tenant1", "revocation_endpoint": as.URL + "/tenant1/oauth2/revoke",
			"global_token_revocation_endpoint":                                   as.URL + "/tenant1/global-token-revocation",
			"global_token_revocation_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
			"global_token_revocation_endpoint_auth_signing_alg_values_supported": []string{"PS256", "RS256"},
			"authorization_grant_profiles_supported":                             []string{"urn:ietf:params:oauth:grant-profile:id-jag"},
			"backchannel_logout_supported":                                       true,
		})
	}))
	defer as.Close()
	var mcp *httptest.Server
	mcp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/mcp":
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", resource_metadata="`+mcp.URL+`/.well-known/oauth-protected-resource/mcp"`)
			w.WriteHeader(401)
		case "/.well-known/oauth-protected-resource/mcp":
			_ = json.NewEncoder(w).Encode(map[string]any{"resource": mcp.URL + "/mcp", "authorization_servers": []string{as.URL + "/tenant1"}})
		default:
			http.NotFound(w, r)
		}
	}))
	defer mcp.Close()

	var out, errb bytes.Buffer
	if code := cli([]string{"targets", "discover", mcp.URL + "/mcp", "--name", "chat"}, &out, &errb); code != 0 {
		t.Fatalf("discover: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"authorization server   " + as.URL + "/tenant1",
		"global token revocation " + as.URL + "/tenant1/global-token-revocation [private_key_jwt]",
		"back-channel logout    true",
		"accepts ID-JAG         true",
		"  - name: chat\n    driver: gtr\n    endpoint: \"" + as.URL + "/tenant1/global-token-revocation\"",
		"    signing_alg: RS256   # the AS accepts PS256, RS256 for GTR",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("discover output lacks %q:\n%s", want, out.String())
		}
	}
}

// targets check proves reachability and our authentication without
// revoking anything: the GTR receiver authenticates the probe, then refuses
// its subject; a wrong key is reported as refused authentication.
func TestTargetsCheck(t *testing.T) {
	dir := t.TempDir()
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := writeFile(cfgFile, fmt.Sprintf("data_dir: %s\npublic_url: %s\ntargets:\n%s", dir, testPublicURL, gtrTarget("as1", peer.URL, "email"))); err != nil {
		t.Fatal(err)
	}
	signer, err := keys.LoadOrCreate(filepath.Join(dir, "keys", "signing-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(signer.JWKS()) }))
	defer jwks.Close()
	peer.SetJWKSURL(jwks.URL)

	var out, errb bytes.Buffer
	if code := cli([]string{"targets", "check", "--config", cfgFile}, &out, &errb); code != 0 || !strings.Contains(out.String(), "ok (authenticated") {
		t.Fatalf("check: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if len(peer.Requests()) != 0 {
		t.Errorf("the check revoked something: %+v", peer.Requests())
	}

	// An issuer that advertises RS256 only for GTR: the check warns and
	// names the signing_alg to set (and still passes: the peer took ES256).
	var meta *httptest.Server
	meta = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-authorization-server" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": meta.URL,
			"global_token_revocation_endpoint_auth_signing_alg_values_supported": []string{"RS256"}})
	}))
	defer meta.Close()
	withIssuer := filepath.Join(dir, "config-issuer.yaml")
	if err := writeFile(withIssuer, fmt.Sprintf("data_dir: %s\npublic_url: %s\ntargets:\n%s    issuer: %s\n", dir, testPublicURL, gtrTarget("as1", peer.URL, "email"), meta.URL)); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := cli([]string{"targets", "check", "--config", withIssuer}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "WARNING: we sign ES256 but the issuer's global_token_revocation_endpoint_auth_signing_alg_values_supported lists RS256; set signing_alg: RS256") {
		t.Errorf("check against an RS256-only issuer: exit %d\n%s%s", code, out.String(), errb.String())
	}

	other, _ := keys.LoadOrCreate(filepath.Join(t.TempDir(), "other.pem"))
	jwks2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(other.JWKS()) }))
	defer jwks2.Close()
	peer.SetJWKSURL(jwks2.URL)
	out.Reset()
	if code := cli([]string{"targets", "check", "--config", cfgFile}, &out, &errb); code == 0 || !strings.Contains(out.String(), "authentication refused") {
		t.Errorf("check with an untrusted key: exit %d\n%s", code, out.String())
	}
}
