package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Preset is what a provider needs of a target: the lever its public
// documentation offers for ending a user's access (the README's provider
// table cites each page). {tenant} in its URLs is the target's tenant.
type Preset struct {
	Provider string
	Driver   string
	Endpoint string
	// Tenant names what the target's tenant must be; empty when the
	// preset needs none.
	Tenant        string
	Auth          AuthConfig
	SubjectFormat string
	HTTP          HTTPCallConfig
	SCIM          SCIMPushConfig
	Kinds         []string
}

// Presets by name.
var Presets = map[string]Preset{
	// Okta itself: clear sessions with their OAuth tokens, revoke grants.
	"okta": {Provider: "Okta", Driver: "okta", Kinds: []string{"deprovisioned", "suspended", "sessions_revoked", "risk_elevated"}},
	// Microsoft Graph: POST /users/{id | userPrincipalName}/revokeSignInSessions
	// invalidates refresh tokens and session cookies (application
	// permission User.RevokeSessions.All, client credentials).
	"entra": {Provider: "Microsoft Entra ID", Driver: "httpcall",
		Endpoint: "https://graph.microsoft.com/v1.0/users/{{.Subject.Email}}/revokeSignInSessions", Tenant: "the directory (tenant) id or domain",
		Auth: AuthConfig{Type: "client_credentials", TokenURL: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
			Method: "client_secret_post", Scope: "https://graph.microsoft.com/.default"},
		HTTP: HTTPCallConfig{Method: "POST", Success: []int{200, 204}, NotApplicable: []int{404}}},
	// Google Workspace Admin SDK: POST /admin/directory/v1/users/{userKey}/signOut
	// signs the user out of all web and device sessions (scope
	// admin.directory.user.security, a service account with domain-wide
	// delegation).
	"google-workspace": {Provider: "Google Workspace", Driver: "httpcall",
		Endpoint: "https://admin.googleapis.com/admin/directory/v1/users/{{.Subject.Email}}/signOut",
		Auth:     AuthConfig{Type: "google_service_account", Scope: "https://www.googleapis.com/auth/admin.directory.user.security"},
		HTTP:     HTTPCallConfig{Method: "POST", Success: []int{200, 204}, NotApplicable: []int{404}}},
	// Slack SCIM API: DELETE /Users/<id> "sets a Slack user to deactivated".
	"slack": {Provider: "Slack", Driver: "scim", Endpoint: "https://api.slack.com/scim/v2",
		Auth: AuthConfig{Type: "bearer"}, SCIM: SCIMPushConfig{Action: "delete", Match: []string{"email", "userName"}}},
	// Asana SCIM (Enterprise, service account): PATCH active=false
	// deprovisions; /Users filters on userName only.
	"asana": {Provider: "Asana", Driver: "scim", Endpoint: "https://app.asana.com/api/1.0/scim",
		Auth: AuthConfig{Type: "bearer"}, SCIM: SCIMPushConfig{Action: "deactivate", Match: []string{"userName"}}},
	// Canva SCIM (Enterprise): no DELETE; PATCH active=false deprovisions.
	"canva": {Provider: "Canva", Driver: "scim", Endpoint: "https://www.canva.com/_scim/v2",
		Auth: AuthConfig{Type: "bearer"}, SCIM: SCIMPushConfig{Action: "deactivate", Match: []string{"userName"}}},
	// Figma SCIM (Organization and Enterprise): active=false deactivates
	// and removes the user from the organization; userName is the email.
	"figma": {Provider: "Figma", Driver: "scim", Endpoint: "https://www.figma.com/scim/v2/{tenant}", Tenant: "the Figma tenant id",
		Auth: AuthConfig{Type: "bearer"}, SCIM: SCIMPushConfig{Action: "deactivate", Match: []string{"userName"}}},
	// Atlassian user provisioning (SCIM) API of a directory: PATCH
	// active=false deactivates a managed account.
	"atlassian": {Provider: "Atlassian", Driver: "scim", Endpoint: "https://api.atlassian.com/scim/directory/{tenant}", Tenant: "the SCIM directory id",
		Auth: AuthConfig{Type: "bearer"}, SCIM: SCIMPushConfig{Action: "deactivate", Match: []string{"userName", "email"}}},
}

// presetDomains are the registrable domains of each provider's own
// authorization servers and APIs.
var presetDomains = map[string][]string{
	"okta": {"okta.com", "oktapreview.com", "okta-emea.com"}, "entra": {"microsoftonline.com", "microsoft.com"},
	"google-workspace": {"google.com", "googleapis.com"}, "slack": {"slack.com"}, "asana": {"asana.com"},
	"canva": {"canva.com"}, "figma": {"figma.com"}, "atlassian": {"atlassian.com", "atlassian.net"},
}

// PresetFor names the preset of the provider that runs the authorization
// server at issuer, "" when none is known.
func PresetFor(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	for name, domains := range presetDomains {
		for _, d := range domains {
			if host == d || strings.HasSuffix(host, "."+d) {
				return name
			}
		}
	}
	return ""
}

// PresetNames lists the presets, sorted.
func PresetNames() []string {
	var out []string
	for k := range Presets {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// applyPreset fills what the target left empty from its preset.
func (t *TargetConfig) applyPreset() error {
	if t.Preset == "" {
		if t.Tenant != "" || t.BaseURL != "" {
			return fmt.Errorf("tenant and base_url go with a preset")
		}
		return nil
	}
	p, ok := Presets[t.Preset]
	if !ok {
		return fmt.Errorf("%q is not one of %s", t.Preset, strings.Join(PresetNames(), ", "))
	}
	if t.Driver != "" && t.Driver != p.Driver {
		return fmt.Errorf("%s uses the %s driver, not %s", t.Preset, p.Driver, t.Driver)
	}
	if p.Tenant != "" && t.Tenant == "" {
		return fmt.Errorf("%s needs tenant: %s", t.Preset, p.Tenant)
	}
	if p.Tenant == "" && t.Tenant != "" {
		return fmt.Errorf("%s takes no tenant", t.Preset)
	}
	fill := func(raw string) (string, error) {
		raw = strings.ReplaceAll(raw, "{tenant}", url.PathEscape(t.Tenant))
		if t.BaseURL == "" || raw == "" {
			return raw, nil
		}
		base, err := url.Parse(t.BaseURL)
		if err != nil || base.Host == "" || base.Path != "" && base.Path != "/" {
			return "", fmt.Errorf("base_url %q is not scheme://host[:port]", t.BaseURL)
		}
		_, rest, _ := strings.Cut(raw, "://")
		path := ""
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			path = rest[j:]
		}
		return base.Scheme + "://" + base.Host + path, nil
	}
	t.Driver = p.Driver
	var err error
	if t.Endpoint == "" {
		if t.Endpoint, err = fill(p.Endpoint); err != nil {
			return err
		}
	}
	if t.Auth.Type == "" {
		t.Auth.Type = p.Auth.Type
	}
	if t.Auth.TokenURL == "" {
		if t.Auth.TokenURL, err = fill(p.Auth.TokenURL); err != nil {
			return err
		}
	}
	if t.Auth.Method == "" {
		t.Auth.Method = p.Auth.Method
	}
	if t.Auth.Scope == "" {
		t.Auth.Scope = p.Auth.Scope
	}
	if t.SubjectFormat == "" {
		t.SubjectFormat = p.SubjectFormat
	}
	if t.HTTP.Method == "" {
		t.HTTP = p.HTTP
		t.HTTP.Success, t.HTTP.NotApplicable = slices.Clone(p.HTTP.Success), slices.Clone(p.HTTP.NotApplicable)
	}
	if t.SCIM.Action == "" && len(t.SCIM.Match) == 0 {
		t.SCIM = SCIMPushConfig{Action: p.SCIM.Action, Match: slices.Clone(p.SCIM.Match)}
	}
	if len(t.Kinds) == 0 {
		t.Kinds = slices.Clone(p.Kinds)
	}
	return nil
}
