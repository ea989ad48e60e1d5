package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
)

// Each provider preset, against a double that follows the provider's cited
// documentation and checks every request: one deactivation reaches all of
// them, each with the request its provider documents (method, path,
// authentication, body), and nothing else.
func TestProviderPresets(t *testing.T) {
	const who = "dana.leaver@example.com"
	var mu sync.Mutex
	saw := map[string][]string{}
	note := func(name, what string) { mu.Lock(); saw[name] = append(saw[name], what); mu.Unlock() }
	fail := func(w http.ResponseWriter, name, format string, args ...any) {
		t.Errorf(name+": "+format, args...)
		w.WriteHeader(http.StatusBadRequest)
	}

	// Microsoft Entra ID: client credentials at login.microsoftonline.com
	// (client_secret_post, scope .default), then Graph's revokeSignInSessions.
	entra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && r.URL.Path == "/contoso.example/oauth2/v2.0/token":
			_ = r.ParseForm()
			if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != "entra-client" ||
				r.PostForm.Get("client_secret") != "entra-secret" || r.PostForm.Get("scope") != "https://graph.microsoft.com/.default" {
				fail(w, "entra", "token request %v", r.PostForm)
				return
			}
			note("entra", "token")
			_ = json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": 3599, "access_token": "graph-at"})
		case r.Method == "POST" && r.URL.Path == "/v1.0/users/"+who+"/revokeSignInSessions":
			if r.Header.Get("Authorization") != "Bearer graph-at" {
				fail(w, "entra", "graph auth %q", r.Header.Get("Authorization"))
				return
			}
			note("entra", "revokeSignInSessions")
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean","value":true}`))
		default:
			fail(w, "entra", "unexpected %s %s", r.Method, r.URL)
		}
	}))
	defer entra.Close()

	// Google Workspace: a service account's JWT as the grant (RFC 7523)
	// at its token_uri, for the admin it acts for, then users.signOut.
	saKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	var google *httptest.Server
	google = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && r.URL.Path == "/token":
			_ = r.ParseForm()
			if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
				fail(w, "google", "grant %v", r.PostForm)
				return
			}
			tok, err := jwt.ParseSigned(r.PostForm.Get("assertion"), []jose.SignatureAlgorithm{jose.RS256})
			var c struct {
				jwt.Claims
				Scope string `json:"scope"`
			}
			if err != nil || tok.Claims(&saKey.PublicKey, &c) != nil || c.Issuer != "lw@proj.iam.gserviceaccount.com" || c.Subject != "admin@example.com" ||
				!c.Audience.Contains(google.URL+"/token") || c.Scope != "https://www.googleapis.com/auth/admin.directory.user.security" ||
				c.Expiry.Time().Sub(c.IssuedAt.Time()) > time.Hour {
				fail(w, "google", "assertion %v %+v", err, c)
				return
			}
			note("google", "token")
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "google-at", "expires_in": 3599, "token_type": "Bearer"})
		case r.Method == "POST" && r.URL.Path == "/admin/directory/v1/users/"+who+"/signOut":
			if body, _ := io.ReadAll(r.Body); len(body) != 0 || r.Header.Get("Authorization") != "Bearer google-at" {
				fail(w, "google", "signOut auth %q body %q (the body must be empty)", r.Header.Get("Authorization"), body)
				return
			}
			note("google", "signOut")
			w.WriteHeader(http.StatusNoContent)
		default:
			fail(w, "google", "unexpected %s %s", r.Method, r.URL)
		}
	}))
	defer google.Close()
	saFile := filepath.Join(t.TempDir(), "sa.json")
	der, _ := x509.MarshalPKCS8PrivateKey(saKey)
	sa, _ := json.Marshal(map[string]string{"type": "service_account", "client_email": "lw@proj.iam.gserviceaccount.com",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "token_uri": google.URL + "/token"})
	if err := os.WriteFile(saFile, sa, 0o600); err != nil {
		t.Fatal(err)
	}

	// SCIM providers: the base path each documents, its bearer token, the
	// filters it accepts, and the way it deprovisions.
	type scimProvider struct {
		name, prefix, token, filterAttr, action string
	}
	scimDouble := func(p scimProvider) *httptest.Server {
		active := true
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+p.token {
				fail(w, p.name, "auth %q", r.Header.Get("Authorization"))
				return
			}
			switch {
			case r.Method == "GET" && r.URL.Path == p.prefix+"/Users":
				want := p.filterAttr + ` eq "` + who + `"`
				if r.URL.Query().Get("filter") != want {
					// e.g. Asana: "The accepted query parameters are: filter for userName".
					w.WriteHeader(http.StatusBadRequest)
					note(p.name, "refused filter "+r.URL.Query().Get("filter"))
					return
				}
				note(p.name, "find")
				_ = json.NewEncoder(w).Encode(map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:ListResponse"},
					"totalResults": 1, "Resources": []any{map[string]any{"id": "u-77", "userName": who, "active": active}}})
			case r.Method == "PATCH" && r.URL.Path == p.prefix+"/Users/u-77" && p.action == "deactivate":
				body, _ := io.ReadAll(r.Body)
				if !strings.Contains(string(body), `"op":"replace","path":"active","value":false`) {
					fail(w, p.name, "patch %s", body)
					return
				}
				active = false
				note(p.name, "deactivate")
				w.WriteHeader(http.StatusNoContent)
			case r.Method == "DELETE" && r.URL.Path == p.prefix+"/Users/u-77" && p.action == "delete":
				note(p.name, "delete")
				w.WriteHeader(http.StatusNoContent)
			default:
				fail(w, p.name, "unexpected %s %s", r.Method, r.URL)
			}
		}))
	}
	scims := []scimProvider{
		{"slack", "/scim/v2", "xoxp-slack", "emails.value", "delete"},
		{"asana", "/api/1.0/scim", "asana-sa-token", "userName", "deactivate"},
		{"canva", "/_scim/v2", "canva-scim-token", "userName", "deactivate"},
		{"figma", "/scim/v2/tenant-42", "figma-scim-token", "userName", "deactivate"},
		{"atlassian", "/scim/directory/dir-9", "atlassian-dir-key", "userName", "deactivate"},
	}
	tenants := map[string]string{"figma": "tenant-42", "atlassian": "dir-9"}

	// Okta itself: clear sessions with OAuth tokens, revoke grants.
	okta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "SSWS okta-api-token" {
			fail(w, "okta", "auth %q", r.Header.Get("Authorization"))
			return
		}
		switch {
		// The user by id, or by login when the event came from another org
		// than this endpoint's (here: the double is not the hook's org).
		case r.Method == "DELETE" && (r.URL.Path == "/api/v1/users/00udana/sessions" || r.URL.Path == "/api/v1/users/"+who+"/sessions") &&
			r.URL.Query().Get("oauthTokens") == "true":
			note("okta", "sessions")
		case r.Method == "DELETE" && (r.URL.Path == "/api/v1/users/00udana/grants" || r.URL.Path == "/api/v1/users/"+who+"/grants"):
			note("okta", "grants")
		default:
			fail(w, "okta", "unexpected %s %s", r.Method, r.URL)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer okta.Close()

	targets := fmt.Sprintf(`  - { name: entra, preset: entra, tenant: contoso.example, base_url: %s, allow_insecure_http: true,
      auth: { client_id: entra-client, client_secret: entra-secret } }
  - { name: google, preset: google-workspace, base_url: %s, allow_insecure_http: true,
      auth: { key_file: %s, subject: admin@example.com } }
  - { name: okta, preset: okta, endpoint: %s, allow_insecure_http: true, auth: { type: bearer, token: okta-api-token } }
`, entra.URL, google.URL, saFile, okta.URL)
	for _, p := range scims {
		srv := scimDouble(p)
		defer srv.Close()
		tenant := ""
		if v := tenants[p.name]; v != "" {
			tenant = "tenant: " + v + ", "
		}
		targets += fmt.Sprintf("  - { name: %s, preset: %s, %sbase_url: %s, allow_insecure_http: true, auth: { token: %s } }\n", p.name, p.name, tenant, srv.URL, p.token)
	}
	w := startWorker(t, testConfig(t, t.TempDir(), targets))
	body := fmt.Sprintf(`{"eventType":"com.okta.event_hook","eventId":"presets-1","data":{"events":[%s]}}`, deactivationOf("presets-u1", "00udana", who))
	if resp := w.postHook([]byte(body), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("hook: %d", resp.StatusCode)
	}
	names := []string{"entra", "google", "okta"}
	for _, p := range scims {
		names = append(names, p.name)
	}
	eventually(t, 30*time.Second, "every preset target revoked", func() bool {
		return len(w.audit(audit.Filter{Type: string(audit.TypeRevocationSucceeded)})) == len(names)
	})
	want := map[string]string{"entra": "token revokeSignInSessions", "google": "token signOut", "okta": "sessions grants",
		"slack": "find delete", "asana": "find deactivate", "canva": "find deactivate", "figma": "find deactivate", "atlassian": "find deactivate"}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range names {
		if got := strings.Join(saw[n], " "); got != want[n] {
			t.Errorf("%s saw %q, want %q", n, got, want[n])
		}
	}
}
