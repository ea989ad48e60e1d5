package drivers

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
)

// The registry drives config loading: its names are the drivers a config
// may name (the list config keeps for code without the registry agrees),
// and each driver's own checks run when a config is loaded.
func TestRegistryDrivesConfig(t *testing.T) {
	defaults := []string{"gtr", "backchannel", "ssfpush", "okta", "httpcall", "scim"}
	if !slices.Equal(config.Drivers, Names()) || !slices.Equal(Names(), defaults) {
		t.Errorf("config.Drivers %v, registry %v, config's defaults %v", config.Drivers, Names(), defaults)
	}
	for _, name := range Names() {
		if r, _ := Lookup(name); r.Open == nil {
			t.Errorf("%s has no Open", name)
		}
	}
	for target, want := range map[string]string{
		"  - { name: a, driver: gtr, endpoint: 'https://a.example/gtr', auth: { type: none } }\n":             "Global Token Revocation requires authentication",
		"  - { name: a, driver: backchannel, endpoint: 'https://a.example/l', auth: { type: signed_jwt } }\n": "itself our signed JWT",
		"  - { name: a, driver: scim, endpoint: 'https://a.example/scim/v2', auth: { type: none } }\n":        "scim driver needs bearer",
		"  - { name: a, driver: ssfpush, endpoint: 'https://a.example/e', set_events: { nonsense: x } }\n":    "is not a kind",
		"  - { name: a, driver: httpcall, endpoint: 'https://a.example/x', http: { method: TRACE } }\n":       "http.method",
		"  - { name: a, driver: okta, endpoint: 'https://acme.okta.com' }\n":                                  "needs an API token",
	} {
		_, err := config.Parse([]byte("public_url: https://lw.example\nokta: { hook: { secrets: [\"0123456789abcdef\"] } }\ntargets:\n" + target))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", strings.TrimSpace(target), err, want)
		}
	}
}

// The example config shows every registered driver, and loads with every
// driver's own checks.
func TestExampleConfigShowsEveryDriver(t *testing.T) {
	raw, err := os.ReadFile("../../../examples/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range Names() {
		if !regexp.MustCompile(`(?m)^\s+driver: ` + regexp.QuoteMeta(name) + `\b`).Match(raw) {
			t.Errorf("examples/config.yaml has no target with driver: %s", name)
		}
	}
	for k, v := range map[string]string{"OKTA_HOOK_SECRET": "hook-secret-0123456789", "OKTA_API_TOKEN": "okta-api-token-0123456789",
		"SCIM_TOKEN": "scim-token-0123456789abc", "AUDIT_TOKEN": "audit-token-0123456789", "OPERATOR_TOKEN": "operator-token-0123456789",
		"HYDRA_ADMIN_TOKEN": "hydra-admin-token", "NOTES_SCIM_TOKEN": "notes-scim-token", "ENTRA_CLIENT_ID": "c", "ENTRA_CLIENT_SECRET": "s"} {
		t.Setenv(k, v)
	}
	if _, err := config.Load("../../../examples/config.yaml"); err != nil {
		t.Errorf("the example config with every driver's checks: %v", err)
	}
}

// Each driver's own defaults are applied when a config loads.
func TestDriverDefaults(t *testing.T) {
	cfg, err := config.Parse([]byte(`okta: { org_url: "https://acme.okta.com", api_token: "okta-api-token-0123456789", hook: { secrets: ["0123456789abcdef"] } }
targets:
  - { name: g, driver: gtr, endpoint: "https://as.example/gtr" }
  - { name: h, driver: httpcall, endpoint: "https://admin.example/u/{{.Subject.ID}}", auth: { type: bearer, token: t0123456789 } }
  - { name: o, driver: okta }
`))
	if err != nil {
		t.Fatal(err)
	}
	g, h, o := cfg.Targets[0], cfg.Targets[1], cfg.Targets[2]
	if g.Auth.Type != "signed_jwt" || h.HTTP.Method != "POST" || len(h.HTTP.Success) == 0 ||
		o.Endpoint != "https://acme.okta.com" || o.Auth.Type != "bearer" || o.Auth.Token != "okta-api-token-0123456789" {
		t.Errorf("driver defaults: gtr %+v, httpcall %+v, okta %s %+v", g.Auth, h.HTTP, o.Endpoint, o.Auth)
	}
	_, err = config.Parse([]byte(`okta: { hook: { secrets: ["0123456789abcdef"] } }
targets:
  - { name: g, driver: gtr, endpoint: "https://as.example/gtr", http: { method: GET }, scim: { action: delete }, set_events: { deprovisioned: x } }
`))
	for _, want := range []string{"http: only the httpcall driver", "scim: only the scim driver", "set_events: only the ssfpush driver"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("settings of another driver: %v, want %q", err, want)
		}
	}
}
