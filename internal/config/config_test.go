package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseExpandsEnvAndAppliesDefaults(t *testing.T) {
	t.Setenv("LW_TEST_SECRET", "s3cret: with # yaml chars")
	t.Setenv("LW_TEST_TOKEN", "0123")
	cfg, err := Parse([]byte(`
okta:
  hook: { secrets: ["${LW_TEST_SECRET}-0123456789"] }
targets:
  - name: linear
    driver: gtr
    endpoint: https://auth.linear.example/global-token-revocation
  - name: admin
    driver: httpcall
    endpoint: https://admin.example/users/{{.Subject.ID}}
    auth:
      type: bearer
      token: ${LW_TEST_TOKEN}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Okta.Hook.Secrets[0]; got != "s3cret: with # yaml chars-0123456789" {
		t.Errorf("secret = %q", got)
	}
	if got := cfg.Targets[1].Auth.Token; got != "0123" {
		t.Errorf("an env value that looks like a number must stay a string, got %q", got)
	}
	tg := cfg.Targets[0]
	// (A driver's own defaults, e.g. gtr's signed_jwt and httpcall's POST,
	// come from the registry: internal/revoke/drivers tests them.)
	if tg.SubjectFormat != "email" || tg.Concurrency != 8 || tg.Timeout != 10*time.Second || tg.MaxAttempts != 12 {
		t.Errorf("target defaults not applied: %+v", tg)
	}
	if cfg.DataDir != "./data" || cfg.Listen != "127.0.0.1:8080" || cfg.PublicURL != "http://127.0.0.1:8080" || !cfg.NATS.EmbeddedServer() ||
		!cfg.NATS.PackMessages() {
		t.Errorf("top-level defaults not applied: %+v", cfg)
	}
	plain, err := Parse([]byte("okta:\n  hook: { secrets: [\"0123456789abcdef\"] }\nnats:\n  pack: false\n"))
	if err != nil || plain.NATS.PackMessages() {
		t.Errorf("nats.pack: false: packs %v, %v", plain.NATS.PackMessages(), err)
	}
}

func TestParseReportsEveryProblemAtOnce(t *testing.T) {
	_, err := Parse([]byte(`
listen: nowhere
lisen: 127.0.0.1:1
nats: { embedded: true, urls: [nats://a:4222] }
okta:
  hook: { secrets: ["short"] }
audit:
  tokens: [ { token: "x", role: admin } ]
targets:
  - name: Bad Name
    driver: carrier-pigeon
    endpoint: http://as.example/revoke
    subject_format: phone
    kinds: [deprovisioned, reactivated, vanished, access_removed]
    timout: 5s
  - name: dup
    driver: gtr
    endpoint: https://as.example/gtr
    auth: { type: none }
  - name: dup
    driver: gtr
    endpoint: https://as.example/gtr
`))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{
		"field lisen not found",
		"field timout not found",
		`listen: "nowhere"`,
		"nats: embedded is true but urls are set",
		"okta.hook.secrets[0] is shorter",
		"audit.tokens[0]: token",
		`audit.tokens[0].role: "admin"`,
		`name: "Bad Name"`,
		`driver: "carrier-pigeon"`,
		"is not https",
		`subject_format: "phone"`,
		`kinds: "reactivated"`,
		`kinds: "vanished"`,
		"duplicate target name",
		"access_removed needs scope",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	cfg, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" {
		t.Errorf("listen %q", cfg.Listen)
	}
}

func TestCheckEndpoint(t *testing.T) {
	for _, c := range []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"https://as.example/gtr", false, true},
		{"http://as.example/gtr", false, false},
		{"http://as.example/gtr", true, false}, // not loopback
		{"http://127.0.0.1:9/gtr", false, false},
		{"http://127.0.0.1:9/gtr", true, true},
		{"http://[::1]:9/gtr", true, true},
		{"http://localhost:9/gtr", true, true},
		{"ftp://as.example/", true, false},
		{"/relative", false, false},
	} {
		if err := CheckEndpoint(c.url, c.insecure); (err == nil) != c.ok {
			t.Errorf("CheckEndpoint(%q, %v) = %v, want ok=%v", c.url, c.insecure, err, c.ok)
		}
	}
}

// Roles default to all four; --roles replaces them, trimmed, and refuses
// an unknown or empty list.
func TestRoles(t *testing.T) {
	c, err := Parse([]byte("data_dir: /tmp/x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Has(RoleIntake) || !c.Has(RolePipeline) || !c.Has(RolePoller) || !c.Has(RoleAudit) {
		t.Fatalf("default roles %v", c.Roles)
	}
	if err := c.SetRoles(" intake , audit "); err != nil || !c.Has(RoleIntake) || c.Has(RolePipeline) || !c.Has(RoleAudit) {
		t.Errorf("roles %v: %v", c.Roles, err)
	}
	for _, bad := range []string{"intake,indexer", " , "} {
		if err := c.SetRoles(bad); err == nil {
			t.Errorf("roles %q accepted", bad)
		}
	}
	if _, err := Parse([]byte("roles: [pipeline, pollster]\n")); err == nil || !strings.Contains(err.Error(), `"pollster"`) {
		t.Errorf("config with an unknown role: %v", err)
	}
}
