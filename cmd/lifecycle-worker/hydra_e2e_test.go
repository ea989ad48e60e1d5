package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
)

// Real peer: ORY Hydra (in-memory SQLite) holds an access and a refresh
// token for a subject; a deactivation of that subject through an Okta hook,
// with an httpcall target on Hydra's admin API, leaves both inactive by
// Hydra's own introspection. CI builds Hydra into test/hydra/bin.
func TestHydraTokensRevoked(t *testing.T) {
	callback := freeAddr(t)
	public, admin, logs := startHydra(t, "http://"+callback)

	// A client, and an authorization-code flow for subject 00uhydra, driven
	// headless through Hydra's admin login and consent APIs.
	redirect := "http://" + callback + "/cb"
	hydraJSON(t, "POST", "http://"+admin+"/admin/clients", map[string]any{
		"client_id": "mcp-client", "client_secret": "mcp-client-secret-0123456789",
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
		"scope": "openid offline_access", "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "client_secret_basic",
	}, nil)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == callback {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	location := func(u string) *url.URL {
		resp, err := browser.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode/100 != 3 {
			t.Fatalf("GET %s: %d %s\n%s", u, resp.StatusCode, resp.Header.Get("Location"), logs.String())
		}
		return loc
	}
	authURL := "http://" + public + "/oauth2/auth?" + url.Values{"client_id": {"mcp-client"}, "response_type": {"code"},
		"scope": {"openid offline_access"}, "redirect_uri": {redirect}, "state": {"state-0123456789"}}.Encode()
	login := location(authURL)
	var accepted struct {
		RedirectTo string `json:"redirect_to"`
	}
	hydraJSON(t, "PUT", "http://"+admin+"/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(login.Query().Get("login_challenge")),
		map[string]any{"subject": "00uhydra"}, &accepted)
	consent := location(accepted.RedirectTo)
	hydraJSON(t, "PUT", "http://"+admin+"/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(consent.Query().Get("consent_challenge")),
		map[string]any{"grant_scope": []string{"openid", "offline_access"}}, &accepted)
	cb := location(accepted.RedirectTo)
	code := cb.Query().Get("code")
	req, _ := http.NewRequest("POST", "http://"+public+"/oauth2/token", strings.NewReader(url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("mcp-client", "mcp-client-secret-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tokens struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tokens)
	resp.Body.Close()
	if tokens.AccessToken == "" || tokens.RefreshToken == "" {
		t.Fatalf("no tokens from hydra (code %q)", code)
	}
	active := func(tok string) bool {
		resp, err := http.PostForm("http://"+admin+"/admin/oauth2/introspect", url.Values{"token": {tok}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v struct {
			Active bool `json:"active"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return v.Active
	}
	if !active(tokens.AccessToken) || !active(tokens.RefreshToken) {
		t.Fatal("hydra's tokens are not active before the deactivation")
	}

	target := fmt.Sprintf(`  - name: hydra
    driver: httpcall
    endpoint: "http://%s/admin/oauth2/auth/sessions/consent?subject={{.Subject.ID | urlquery}}&all=true"
    subject_format: opaque
    allow_insecure_http: true
    http: { method: DELETE, success: [204], not_applicable: [404] }
`, admin)
	w := startWorker(t, testConfig(t, t.TempDir(), target))
	body := fmt.Sprintf(`{"eventType":"com.okta.event_hook","eventId":"hydra-1","data":{"events":[%s]}}`, deactivationOf("hydra-u1", "00uhydra", "hydra.user@example.com"))
	if resp := w.postHook([]byte(body), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("hook: %d", resp.StatusCode)
	}
	eventually(t, 30*time.Second, "the revocation at hydra", func() bool {
		return len(w.audit(audit.Filter{Target: "hydra", Type: string(audit.TypeRevocationSucceeded)})) == 1
	})
	if active(tokens.AccessToken) || active(tokens.RefreshToken) {
		t.Errorf("after the deactivation hydra still says active: access %v refresh %v", active(tokens.AccessToken), active(tokens.RefreshToken))
	}
}

// startHydra runs ORY Hydra (in-memory SQLite) on loopback with its login
// and consent pages at loginBase/login and loginBase/consent; it returns the
// public and admin addresses and Hydra's log. CI builds Hydra into
// test/hydra/bin; elsewhere the test is skipped when it is not built.
func startHydra(t *testing.T, loginBase string) (public, admin string, logs *bytes.Buffer) {
	t.Helper()
	bin, _ := filepath.Abs("../../test/hydra/bin/hydra")
	if v := os.Getenv("LW_HYDRA_BIN"); v != "" {
		bin = v
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("hydra not built at %s: %v", bin, err)
		}
		t.Skip("hydra not built: see test/hydra/README.md")
	}
	public, admin = freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "hydra.yml")
	if err := writeFile(cfgFile, fmt.Sprintf(`dsn: memory
serve:
  public: { host: 127.0.0.1, port: %s }
  admin: { host: 127.0.0.1, port: %s }
urls:
  self: { issuer: http://%s }
  login: %s/login
  consent: %s/consent
secrets: { system: ["a-test-only-system-secret-0123456789"] }
strategies: { access_token: opaque }
log: { level: error }
`, port(public), port(admin), public, loginBase, loginBase)); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out", "-c", cfgFile)
	logs = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, 60*time.Second, "hydra ready", func() bool {
		resp, err := http.Get("http://" + admin + "/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return public, admin, logs
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

func hydraJSON(t *testing.T, method, u string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, body)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, u, resp.StatusCode, got)
	}
	if out != nil {
		if err := json.Unmarshal(got, out); err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
	}
}
