package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
)

// Discovery is what an MCP server's metadata says about revoking there.
type Discovery struct {
	Resource                      string   `json:"resource"`
	ResourceMetadataURL           string   `json:"resource_metadata_url"`
	AuthorizationServer           string   `json:"authorization_server"`
	ASMetadataURL                 string   `json:"as_metadata_url"`
	GlobalTokenRevocationEndpoint string   `json:"global_token_revocation_endpoint,omitempty"`
	GTRAuthMethods                []string `json:"global_token_revocation_endpoint_auth_methods_supported,omitempty"`
	RevocationEndpoint            string   `json:"revocation_endpoint,omitempty"`
	RevocationAuthMethods         []string `json:"revocation_endpoint_auth_methods_supported,omitempty"`
	BackchannelLogoutSupported    bool     `json:"backchannel_logout_supported"`
	AuthorizationGrantProfiles    []string `json:"authorization_grant_profiles_supported,omitempty"`
	AcceptsIDJAG                  bool     `json:"accepts_id_jag"`
	// The JWS algorithms the AS says it accepts or uses: for GTR bearer
	// JWTs, for client assertions at its token endpoint, for its ID tokens
	// (what its relying parties verify, so what our logout tokens should be).
	GTRSigningAlgs           []string `json:"global_token_revocation_endpoint_auth_signing_alg_values_supported,omitempty"`
	TokenEndpointSigningAlgs []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	IDTokenSigningAlgs       []string `json:"id_token_signing_alg_values_supported,omitempty"`
	Notes                    []string `json:"notes,omitempty"`
}

// SuggestAlg returns the algorithm to configure for a peer that
// advertises advertised, when ours (current) is not among them: the first
// we can sign with, in the order of config.SigningAlgs. Empty when nothing
// needs changing (or nothing is advertised, or nothing we have fits).
func SuggestAlg(advertised []string, current string) string {
	if len(advertised) == 0 || slices.Contains(advertised, current) {
		return ""
	}
	for _, alg := range config.SigningAlgs {
		if slices.Contains(advertised, alg) {
			return alg
		}
	}
	return ""
}

// IDJAGProfile marks an AS that accepts Identity Assertion JWT grants.
const IDJAGProfile = "urn:ietf:params:oauth:grant-profile:id-jag"

// Discover follows an MCP server URL to its authorization server: RFC 9728
// protected resource metadata (from the 401's resource_metadata, else the
// well-known path), then RFC 8414 metadata (else OpenID configuration).
func Discover(ctx context.Context, client *http.Client, mcpURL string) (*Discovery, error) {
	u, err := url.Parse(mcpURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("not an absolute URL: %q", mcpURL)
	}
	d := &Discovery{Resource: mcpURL}
	// An unauthenticated MCP request answers 401 pointing at its metadata.
	if resp, err := get(ctx, client, mcpURL); err == nil {
		d.ResourceMetadataURL = resourceMetadataParam(resp.Header.Values("WWW-Authenticate"))
		resp.Body.Close()
		if d.ResourceMetadataURL != "" {
			if err := followable(u, d.ResourceMetadataURL); err != nil {
				return d, fmt.Errorf("resource_metadata: %w", err)
			}
		}
	}
	if d.ResourceMetadataURL == "" {
		d.ResourceMetadataURL = wellKnown(u, "oauth-protected-resource")
		d.Notes = append(d.Notes, "no resource_metadata in WWW-Authenticate; used the well-known path")
	}
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	if err := getJSON(ctx, client, d.ResourceMetadataURL, &prm); err != nil {
		return d, fmt.Errorf("protected resource metadata: %w", err)
	}
	if len(prm.AuthorizationServers) == 0 {
		return d, errors.New("protected resource metadata names no authorization server")
	}
	if len(prm.AuthorizationServers) > 1 {
		d.Notes = append(d.Notes, fmt.Sprintf("%d authorization servers listed; using the first", len(prm.AuthorizationServers)))
	}
	d.AuthorizationServer = prm.AuthorizationServers[0]
	if err := followable(u, d.AuthorizationServer); err != nil {
		return d, fmt.Errorf("authorization server: %w", err)
	}
	as, _ := url.Parse(d.AuthorizationServer)
	var meta map[string]any
	for _, candidate := range []string{wellKnown(as, "oauth-authorization-server"), wellKnown(as, "openid-configuration"),
		strings.TrimRight(d.AuthorizationServer, "/") + "/.well-known/openid-configuration"} {
		if err := getJSON(ctx, client, candidate, &meta); err == nil {
			d.ASMetadataURL = candidate
			break
		}
	}
	if d.ASMetadataURL == "" {
		return d, errors.New("no RFC 8414 or OpenID metadata at the authorization server")
	}
	str := func(k string) string { s, _ := meta[k].(string); return s }
	list := func(k string) []string {
		var out []string
		for _, v := range asSlice(meta[k]) {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	d.GlobalTokenRevocationEndpoint, d.GTRAuthMethods = str("global_token_revocation_endpoint"), list("global_token_revocation_endpoint_auth_methods_supported")
	if ep := d.GlobalTokenRevocationEndpoint; ep != "" {
		if err := followable(u, ep); err != nil {
			d.Notes = append(d.Notes, fmt.Sprintf("the metadata's global_token_revocation_endpoint is unusable: %v", err))
			d.GlobalTokenRevocationEndpoint = ""
		}
	}
	d.RevocationEndpoint, d.RevocationAuthMethods = str("revocation_endpoint"), list("revocation_endpoint_auth_methods_supported")
	d.BackchannelLogoutSupported, _ = meta["backchannel_logout_supported"].(bool)
	d.AuthorizationGrantProfiles = list("authorization_grant_profiles_supported")
	d.GTRSigningAlgs = list("global_token_revocation_endpoint_auth_signing_alg_values_supported")
	d.TokenEndpointSigningAlgs = list("token_endpoint_auth_signing_alg_values_supported")
	d.IDTokenSigningAlgs = list("id_token_signing_alg_values_supported")
	d.AcceptsIDJAG = slices.Contains(d.AuthorizationGrantProfiles, IDJAGProfile)
	if strings.Contains(d.GlobalTokenRevocationEndpoint, "{") {
		d.Notes = append(d.Notes, "the GTR endpoint is a template (e.g. Auth0's {connectionName}); fill it in")
	}
	return d, nil
}

// followable checks a URL that a remote server named before we fetch it or
// print it as config: https, or http on loopback only when the discovery
// itself started on loopback (a local test); never a loopback, private or
// link-local address named by a server that is not itself one — a metadata
// document must not aim this command (or a config made from it) at the
// operator's own network.
func followable(start *url.URL, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || !utf8.ValidString(raw) || strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\' }) {
		return fmt.Errorf("%q is not a plain absolute URL", raw)
	}
	local := func(host string) bool {
		if host == "localhost" || strings.HasSuffix(host, ".localhost") {
			return true
		}
		ip := net.ParseIP(host)
		return ip != nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified())
	}
	startLocal := start.Scheme == "http" && local(start.Hostname())
	switch {
	case u.Scheme == "http" && !(startLocal && config.IsLoopback(u.Hostname())):
		return fmt.Errorf("%q is not https", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q is not https", raw)
	case local(u.Hostname()) && !(startLocal && config.IsLoopback(u.Hostname())):
		return fmt.Errorf("%q is a loopback, private or link-local address", raw)
	}
	return nil
}

// yamlString is s as a YAML double-quoted scalar: whatever a server put in
// it (newlines, quotes, colons) stays one value.
func yamlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case !yamlPrintable(r) || r == 0x85 || r == 0x2028 || r == 0x2029 || r == 0xfeff:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

var plainName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// yamlPrintable is YAML 1.2's c-printable, less the line breaks.
func yamlPrintable(r rune) bool {
	return r >= 0x20 && r <= 0x7e || r >= 0xa0 && r <= 0xd7ff || r >= 0xe000 && r <= 0xfffd || r >= 0x10000 && r <= 0x10ffff
}

// TargetYAML is a ready target config for what was found. Every value that
// came from a server is quoted.
func (d *Discovery) TargetYAML(name string) string {
	var b strings.Builder
	if !plainName.MatchString(name) {
		name = yamlString(name)
	}
	fmt.Fprintf(&b, "  - name: %s\n", name)
	switch {
	case d.GlobalTokenRevocationEndpoint != "":
		fmt.Fprintf(&b, "    driver: gtr\n    endpoint: %s\n    subject_format: email   # or iss_sub: ask the AS which it resolves\n    auth: { type: signed_jwt }   # the AS must trust our JWKS (public_url/.well-known/jwks.json)\n", yamlString(d.GlobalTokenRevocationEndpoint))
		if alg := SuggestAlg(d.GTRSigningAlgs, "ES256"); alg != "" {
			fmt.Fprintf(&b, "    signing_alg: %s   # the AS accepts %s for GTR\n", alg, strings.Trim(yamlString(strings.Join(d.GTRSigningAlgs, ", ")), `"`))
		}
	case d.BackchannelLogoutSupported:
		fmt.Fprintf(&b, "    driver: backchannel\n    endpoint: <the RP's backchannel_logout_uri at this AS>\n    audience: <its client id>\n    # the AS supports OIDC back-channel logout; the logout URI is per client, not in its metadata\n")
		if alg := SuggestAlg(d.IDTokenSigningAlgs, "ES256"); alg != "" {
			fmt.Fprintf(&b, "    signing_alg: %s   # its relying parties verify %s ID tokens; most accept only that\n", alg, strings.Trim(yamlString(strings.Join(d.IDTokenSigningAlgs, ", ")), `"`))
		}
	case config.PresetFor(d.AuthorizationServer) != "":
		name := config.PresetFor(d.AuthorizationServer)
		p := config.Presets[name]
		fmt.Fprintf(&b, "    preset: %s   # %s: no Global Token Revocation in its metadata; the preset uses the lever %s documents (README: provider table)\n", name, p.Provider, p.Provider)
		if p.Tenant != "" {
			fmt.Fprintf(&b, "    tenant: <%s>\n", p.Tenant)
		}
		fmt.Fprintf(&b, "    auth: { }   # the preset's credentials: see the README's provider table\n")
	default:
		fmt.Fprintf(&b, "    driver: httpcall\n    endpoint: <the AS's admin API to revoke a user's tokens>\n    # no Global Token Revocation endpoint and no back-channel logout in its metadata")
		if d.RevocationEndpoint != "" {
			fmt.Fprintf(&b, "; RFC 7009 at %s revokes single tokens only", strings.Trim(yamlString(d.RevocationEndpoint), `"`))
		}
		b.WriteString("\n")
	}
	if d.AuthorizationServer != "" {
		fmt.Fprintf(&b, "    issuer: %s   # the audience of its ID-JAGs\n", yamlString(d.AuthorizationServer))
	}
	fmt.Fprintf(&b, "    kinds: [deprovisioned, suspended, sessions_revoked, credentials_changed, risk_elevated]\n    max_token_lifetime: 1h   # the AS's longest access-token lifetime\n")
	return b.String()
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// wellKnown inserts /.well-known/<name> before the URL's path (RFC 8414 §3.1,
// RFC 9728 §3.1), dropping a trailing slash.
func wellKnown(u *url.URL, name string) string {
	path := strings.TrimRight(u.EscapedPath(), "/")
	return u.Scheme + "://" + u.Host + "/.well-known/" + name + path
}

// resourceMetadataParam extracts resource_metadata="…" from a Bearer challenge.
func resourceMetadataParam(challenges []string) string {
	for _, c := range challenges {
		i := strings.Index(c, "resource_metadata=")
		if i < 0 {
			continue
		}
		v := c[i+len("resource_metadata="):]
		if strings.HasPrefix(v, `"`) {
			if end := strings.Index(v[1:], `"`); end >= 0 {
				return v[1 : end+1]
			}
		}
		if end := strings.IndexAny(v, ", "); end >= 0 {
			return v[:end]
		}
		return v
	}
	return ""
}

func get(ctx context.Context, client *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	return client.Do(req)
}

func getJSON(ctx context.Context, client *http.Client, u string, v any) error {
	resp, err := get(ctx, client, u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// ASMetadata reads an authorization server's RFC 8414 metadata (else its
// OpenID configuration) from its issuer URL.
func ASMetadata(ctx context.Context, client *http.Client, issuer string) (map[string]any, error) {
	as, err := url.Parse(issuer)
	if err != nil || as.Host == "" {
		return nil, fmt.Errorf("not an absolute URL: %q", issuer)
	}
	var meta map[string]any
	var last error
	for _, candidate := range []string{wellKnown(as, "oauth-authorization-server"), wellKnown(as, "openid-configuration"),
		strings.TrimRight(issuer, "/") + "/.well-known/openid-configuration"} {
		if last = getJSON(ctx, client, candidate, &meta); last == nil {
			return meta, nil
		}
	}
	return nil, last
}

// Strings is a metadata member that is a list of strings.
func Strings(meta map[string]any, k string) []string {
	var out []string
	for _, v := range asSlice(meta[k]) {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
