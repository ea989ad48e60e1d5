package revoke

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// mcpPeer is an MCP server whose protected resource metadata names as, and
// an authorization server whose metadata is meta.
func mcpPeer(t *testing.T, asURL func(self string) string, meta map[string]any) string {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/mcp":
			w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+srv.URL+`/.well-known/oauth-protected-resource/mcp"`)
			w.WriteHeader(401)
		case r.URL.Path == "/.well-known/oauth-protected-resource/mcp":
			_ = json.NewEncoder(w).Encode(map[string]any{"resource": srv.URL + "/mcp", "authorization_servers": []string{asURL(srv.URL)}})
		case strings.HasPrefix(r.URL.Path, "/.well-known/oauth-authorization-server"):
			_ = json.NewEncoder(w).Encode(meta)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// What a server says cannot inject config: a GTR endpoint with a newline
// and a YAML key in it stays one quoted value (or is refused), and the
// printed target parses to exactly the keys we wrote.
func TestDiscoveredValuesCannotInjectConfig(t *testing.T) {
	evil := "https://as.example/gtr\n    auth: { type: bearer, token: ${OKTA_API_TOKEN} }\n    endpoint: https://attacker.example/x"
	base := mcpPeer(t, func(self string) string { return self }, map[string]any{
		"global_token_revocation_endpoint": evil, "revocation_endpoint": "https://as.example/revoke\n    driver: okta"})
	d, err := Discover(context.Background(), http.DefaultClient, base+"/mcp")
	if err != nil {
		t.Fatal(err)
	}
	if d.GlobalTokenRevocationEndpoint != "" {
		t.Errorf("an endpoint with a newline was kept: %q", d.GlobalTokenRevocationEndpoint)
	}
	d.GlobalTokenRevocationEndpoint = evil // as if it had been kept: the YAML still holds
	var targets []map[string]any
	if err := yaml.Unmarshal([]byte(d.TargetYAML("x")), &targets); err != nil {
		t.Fatalf("printed YAML does not parse: %v\n%s", err, d.TargetYAML("x"))
	}
	if len(targets) != 1 || targets[0]["endpoint"] != evil || targets[0]["auth"] != nil && targets[0]["auth"].(map[string]any)["type"] != "signed_jwt" {
		t.Errorf("injected config: %v", targets)
	}
}

// Discovery follows only https, or loopback http when it started on
// loopback; never a private or link-local address a server names.
func TestDiscoveryFollowsOnlySafeURLs(t *testing.T) {
	for _, as := range []string{"http://169.254.169.254/latest", "http://as.example/tenant", "https://10.0.0.1/tenant", "ftp://as.example/x"} {
		base := mcpPeer(t, func(string) string { return as }, map[string]any{})
		if _, err := Discover(context.Background(), http.DefaultClient, base+"/mcp"); err == nil || !strings.Contains(err.Error(), "authorization server") {
			t.Errorf("AS %s: %v, want a refusal", as, err)
		}
	}
	start := mustURL(t, "https://mcp.example/mcp")
	for raw, ok := range map[string]bool{
		"https://as.example/x": true, "https://127.0.0.1/x": false, "https://192.168.1.1/": false, "http://as.example/": false,
		"https://[::1]/": false, "https://localhost/": false, "https://as.example/{connection}/gtr": true, "https://as.example/a b": false,
	} {
		if err := followable(start, raw); (err == nil) != ok {
			t.Errorf("followable(%s) = %v, want ok=%v", raw, err, ok)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// An authorization server of a provider with a preset, and no GTR in its
// metadata: discover proposes the preset (with its tenant to fill).
func TestDiscoverProposesPreset(t *testing.T) {
	for as, want := range map[string][]string{
		"https://mcp.asana.com":            {"preset: asana", "auth: { }"},
		"https://auth.atlassian.com":       {"preset: atlassian", "tenant: <the SCIM directory id>"},
		"https://auth.unknown-app.example": {"driver: httpcall"},
	} {
		y := (&Discovery{AuthorizationServer: as}).TargetYAML("t")
		for _, w := range want {
			if !strings.Contains(y, w) {
				t.Errorf("%s: %q not in\n%s", as, w, y)
			}
		}
	}
}
