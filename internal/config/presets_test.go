package config

import (
	"strings"
	"testing"
)

// A preset fills what the target leaves empty, needs its tenant, refuses
// a driver of another kind, and base_url moves its URLs' host only.
func TestPresets(t *testing.T) {
	parse := func(target string) (*Config, error) {
		return Parse([]byte("public_url: https://lw.example\nokta: { hook: { secrets: [\"0123456789abcdef\"] } }\ntargets:\n" + target))
	}
	cfg, err := parse("  - { name: e, preset: entra, tenant: contoso.example, auth: { client_id: c, client_secret: s } }\n")
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Targets[0]
	if e.Driver != "httpcall" || e.Endpoint != "https://graph.microsoft.com/v1.0/users/{{.Subject.Email}}/revokeSignInSessions" ||
		e.Auth.Type != "client_credentials" || e.Auth.TokenURL != "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token" ||
		e.Auth.Scope != "https://graph.microsoft.com/.default" || e.HTTP.Method != "POST" {
		t.Errorf("entra: %+v", e)
	}
	cfg, err = parse("  - { name: f, preset: figma, tenant: t1, base_url: 'http://127.0.0.1:9', allow_insecure_http: true, auth: { token: x } }\n")
	if err != nil {
		t.Fatal(err)
	}
	if f := cfg.Targets[0]; f.Endpoint != "http://127.0.0.1:9/scim/v2/t1" || f.Driver != "scim" || f.SCIM.Action != "deactivate" {
		t.Errorf("figma with base_url: %+v", f)
	}
	for target, want := range map[string]string{
		"  - { name: a, preset: atlassian, auth: { token: x } }\n":                 "needs tenant",
		"  - { name: a, preset: nope }\n":                                          "is not one of",
		"  - { name: a, preset: slack, driver: gtr, auth: { token: x } }\n":        "uses the scim driver",
		"  - { name: a, preset: slack, tenant: x, auth: { token: x } }\n":          "takes no tenant",
		"  - { name: a, driver: gtr, endpoint: 'https://a.example', tenant: x }\n": "go with a preset",
		"  - { name: a, preset: google-workspace }\n":                              "auth.key_file",
	} {
		if _, err := parse(target); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", strings.TrimSpace(target), err, want)
		}
	}
	for issuer, want := range map[string]string{"https://acme.okta.com/oauth2/default": "okta", "https://mcp.asana.com": "asana",
		"https://login.microsoftonline.com/x/v2.0": "entra", "https://auth.example.com": "", "https://evilasana.com": ""} {
		if got := PresetFor(issuer); got != want {
			t.Errorf("PresetFor(%s) = %q, want %q", issuer, got, want)
		}
	}
}
