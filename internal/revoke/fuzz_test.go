package revoke

import (
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Whatever an MCP server or authorization server sends: the challenge
// parser never crashes, and a value printed into a target config stays one
// YAML value, exactly as sent.
func FuzzDiscoveryMetadata(f *testing.F) {
	f.Add(`Bearer error="invalid_token", resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp"`,
		"https://as.example/oauth2/v1/global-token-revocation")
	f.Add(`Bearer resource_metadata=https://x, scope="a"`, "https://as.example/{connectionName}/gtr\n    auth: {type: none}")
	f.Add(`resource_metadata="`, "\"\\\u2028\x00: #")
	f.Fuzz(func(t *testing.T, challenge, endpoint string) {
		_ = resourceMetadataParam([]string{challenge})
		if endpoint == "" {
			return // no endpoint: another kind of target
		}
		d := &Discovery{GlobalTokenRevocationEndpoint: endpoint, AuthorizationServer: endpoint, RevocationEndpoint: endpoint}
		var targets []map[string]any
		if err := yaml.Unmarshal([]byte(d.TargetYAML("t")), &targets); err != nil {
			t.Fatalf("printed YAML does not parse: %v\n%s", err, d.TargetYAML("t"))
		}
		// YAML holds only Unicode: invalid UTF-8 cannot come through as
		// sent (discovery refuses such URLs), but it must not break out.
		exact := !utf8.ValidString(endpoint) || targets[0]["endpoint"] == endpoint && targets[0]["issuer"] == endpoint
		if len(targets) != 1 || !exact || len(targets[0]) != 8 {
			t.Fatalf("endpoint %q printed as %v", endpoint, targets)
		}
	})
}
