package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration file.
type Config struct {
	// Roles this process plays (default: all): intake (the IdP-facing
	// endpoints), pipeline (planner and executors), poller (the System Log
	// backstop, when enabled), audit (the index, its API and checkpoints).
	Roles     []string   `yaml:"roles"`
	DataDir   string     `yaml:"data_dir"`
	Listen    string     `yaml:"listen"`
	PublicURL string     `yaml:"public_url"`
	Log       LogConfig  `yaml:"log"`
	HTTP      HTTPConfig `yaml:"http"`
	NATS      NATSConfig `yaml:"nats"`
	Keys      KeysConfig `yaml:"keys"`
	Okta      OktaConfig `yaml:"okta"`
	SCIM      SCIMConfig `yaml:"scim"`
	SSF       SSFConfig  `yaml:"ssf"`
	// UniversalLogout makes the worker the IdPs' Universal Logout (Global
	// Token Revocation) endpoint.
	UniversalLogout UniversalLogoutConfig `yaml:"universal_logout"`
	Audit           AuditConfig           `yaml:"audit"`
	// Console is the security team's web console at / (role audit).
	Console ConsoleConfig  `yaml:"console"`
	Targets []TargetConfig `yaml:"targets"`

	// secretsOptional: validating for a read-only command.
	secretsOptional bool
}

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// HTTPConfig bounds the inbound HTTP server.
type HTTPConfig struct {
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	IdleTimeout  time.Duration `yaml:"idle_timeout"`
	MaxBodyBytes int64         `yaml:"max_body_bytes"`
}

// NATSConfig chooses between the embedded server and an external cluster.
type NATSConfig struct {
	Embedded *bool    `yaml:"embedded"` // default: true unless urls are given
	URLs     []string `yaml:"urls"`
	Replicas int      `yaml:"replicas"`
	// Listen opens a TCP listener on the embedded server (e.g. for the nats
	// CLI); empty means in-process connections only.
	Listen string `yaml:"listen"`
	// SyncAlways makes the embedded server fsync before every acknowledgement.
	SyncAlways bool `yaml:"sync_always"`
	// PublishTimeout bounds how long intake waits for the broker before it
	// answers the IdP 503. Okta gives up after 3 s.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// Users are the identities the embedded server's listener accepts,
	// each limited by the server to what its roles do (intake, pipeline,
	// poller, audit, admin, monitor). Required with listen: nobody
	// connects without credentials.
	Users []NATSUserConfig `yaml:"users"`
	// TLS: on the embedded listener, its certificate and key, and the CA
	// client certificates must chain to (required when listen is not a
	// loopback address); for an external cluster, the servers' CA and our
	// client certificate.
	TLS NATSTLSConfig `yaml:"tls"`
	// How this process authenticates to an external cluster (or another
	// process's embedded server): one of user and password, an nkey seed
	// file, or a credentials file.
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	NkeySeedFile string `yaml:"nkey_seed_file"`
	CredsFile    string `yaml:"creds_file"`
	// StreamMaxBytes caps the LIFECYCLE and AUDIT streams on disk (0: 1
	// GiB each, reserved in the server's store); lw_stream_bytes_ratio warns before a cap is reached, and
	// at 90 % unauthenticated refusals are no longer written one by one.
	StreamMaxBytes int64 `yaml:"stream_max_bytes"`
	// Pack packs REVOKE batches and AUDIT records and record groups with
	// S2 over the worker's dictionary (default true, decisions 0021, 0024).
	// false writes them plain: while replicas of a version that cannot read
	// them still run, or for readers of the AUDIT stream other than the
	// worker. Packed or not, both are read.
	Pack *bool `yaml:"pack"`
}

// PackMessages reports whether batches, record groups and records are
// written packed (the default).
func (n NATSConfig) PackMessages() bool { return n.Pack == nil || *n.Pack }

// NATSUserConfig is one identity of the embedded server: name and
// password (plain or a bcrypt hash), or a public user nkey.
type NATSUserConfig struct {
	Name     string   `yaml:"name"`
	Password string   `yaml:"password"`
	Nkey     string   `yaml:"nkey"`
	Roles    []string `yaml:"roles"`
}

// NATSTLSConfig holds PEM file paths.
type NATSTLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// NATSRoles are the roles a NATS identity can hold.
var NATSRoles = []string{"intake", "pipeline", "poller", "audit", "admin", "monitor"}

// EmbeddedServer reports whether lifecycle-worker runs its own nats-server.
func (n NATSConfig) EmbeddedServer() bool {
	if n.Embedded != nil {
		return *n.Embedded
	}
	return len(n.URLs) == 0
}

// KeysConfig locates the JWT signing key.
type KeysConfig struct {
	// SigningKeyFile is a PEM private key (EC P-256 or RSA). Empty: a P-256
	// key is generated into <data_dir>/keys on first start.
	SigningKeyFile string `yaml:"signing_key_file"`
	// CheckpointKeyFile is the Ed25519 key that signs audit checkpoints.
	// Empty: generated into <data_dir>/keys on first start.
	CheckpointKeyFile string `yaml:"checkpoint_key_file"`
}

// OktaConfig configures Okta as a signal source.
type OktaConfig struct {
	// OrgURL is the Okta org; it is the issuer of iss_sub subjects from Okta.
	OrgURL string `yaml:"org_url"`
	// APIToken (SSWS) reads the System Log (scope okta.logs.read).
	APIToken  string          `yaml:"api_token"`
	Hook      HookConfig      `yaml:"hook"`
	SystemLog SystemLogConfig `yaml:"system_log"`
	// EventTypes overrides the event-type → kind table; a kind of "ignore"
	// drops a type from it.
	EventTypes map[string]string `yaml:"event_types"`
}

// SystemLogConfig is the backstop poller of the Okta System Log.
type SystemLogConfig struct {
	Enabled  bool          `yaml:"enabled"`
	Interval time.Duration `yaml:"interval"`
	Lookback time.Duration `yaml:"lookback"` // where the very first poll starts
}

// HookConfig authenticates Okta Event Hook deliveries.
type HookConfig struct {
	Header  string   `yaml:"header"`
	Secrets []string `yaml:"secrets"`
}

// SCIMConfig configures the SCIM 2.0 service provider at /scim/v2.
type SCIMConfig struct {
	Tokens []string `yaml:"tokens"` // accepted bearer tokens; none: SCIM refuses every request
	// Issuer is the IdP's issuer for iss_sub subjects of SCIM events.
	Issuer string `yaml:"issuer"`
}

// SSFConfig configures the Shared Signals receiver at /ssf/events: SETs
// pushed (RFC 8935) by the transmitters listed, CAEP and RISC events.
type SSFConfig struct {
	// Audience lists the aud values a SET may carry (one must match);
	// default: public_url.
	Audience     []string               `yaml:"audience"`
	Transmitters []SSFTransmitterConfig `yaml:"transmitters"`
	// MaxSETAge refuses SETs issued longer ago (default 12h, at most 24h:
	// a replay past the event store's 24 h dedup window would act again).
	MaxSETAge time.Duration `yaml:"max_set_age"`
	// EventTypes overrides the mapping of event-type URIs to kinds (or
	// "ignore").
	EventTypes map[string]string `yaml:"event_types"`
}

// SSFTransmitterConfig is one transmitter whose SETs we accept.
type SSFTransmitterConfig struct {
	Issuer string `yaml:"issuer"` // the SETs' iss, exactly
	// JWKSURI is where its signing keys are (https; refetched when a SET
	// names a kid we do not know); or JWKSFile holds them.
	JWKSURI  string `yaml:"jwks_uri"`
	JWKSFile string `yaml:"jwks_file"`
	// Tokens, when set, are what the stream's authorization_header may
	// carry (Authorization: Bearer <token>), in addition to the signature.
	Tokens []string `yaml:"tokens"`
	// PollURL, when set, is the stream's RFC 8936 poll endpoint: SETs are
	// fetched from it (with PollToken as bearer, every PollInterval when
	// none are waiting) by the processes with the poller role.
	PollURL           string        `yaml:"poll_url"`
	PollToken         string        `yaml:"poll_token"`
	PollInterval      time.Duration `yaml:"poll_interval"`
	AllowInsecureHTTP bool          `yaml:"allow_insecure_http"` // http:// jwks_uri and poll_url on loopback, for tests
	// Stream, when set, makes the worker create and keep its own push
	// stream at the transmitter (SSF 1.0 stream management): pointed at
	// public_url/ssf/events, with a bearer token it generates and rotates.
	Stream *SSFStreamConfig `yaml:"stream"`
}

// SSFStreamConfig is a stream the worker manages at its transmitter.
type SSFStreamConfig struct {
	// Delivery is push (default: to public_url/ssf/events) or poll (the
	// transmitter names an RFC 8936 endpoint; the poller role fetches).
	Delivery string `yaml:"delivery"`
	// EventsRequested (default: every event type we act on).
	EventsRequested []string `yaml:"events_requested"`
	Description     string   `yaml:"description"`
	// Auth is how we call the transmitter's management API: bearer, or
	// client_credentials (scope ssf.manage per the interoperability profile).
	Auth AuthConfig `yaml:"auth"`
	// ReconcileInterval: how often the stream is checked (default 5m);
	// VerifyEvery: how often a verification is asked for (default 24h);
	// VerifyWithin: how long it may take before it is overdue (default
	// 5m); RotateEvery: how often the delivery token changes (default 720h).
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	VerifyEvery       time.Duration `yaml:"verify_every"`
	VerifyWithin      time.Duration `yaml:"verify_within"`
	RotateEvery       time.Duration `yaml:"rotate_every"`
}

// UniversalLogoutConfig configures the Global Token Revocation receiver.
type UniversalLogoutConfig struct {
	// Path of the endpoint (default /global-token-revocation); a request's
	// aud must be public_url + path, exactly.
	Path    string               `yaml:"path"`
	Issuers []LogoutIssuerConfig `yaml:"issuers"`
}

// LogoutIssuerConfig is one IdP whose Universal Logout requests we take.
type LogoutIssuerConfig struct {
	// Issuer is the JWTs' iss, exactly (Okta: https://acme.okta.com; Auth0:
	// https://tenant.auth0.com/ with the slash).
	Issuer string `yaml:"issuer"`
	// JWKSURI or JWKSFile override finding the keys through the issuer's
	// metadata (/.well-known/openid-configuration).
	JWKSURI  string `yaml:"jwks_uri"`
	JWKSFile string `yaml:"jwks_file"`
	// Clients, when set, are the only callers (the JWT's sub: the app's
	// client id or SAML appInstanceId at the IdP) taken.
	Clients []string `yaml:"clients"`
	// Kind is what a logout means (default sessions_revoked; deprovisioned
	// or suspended to act harder).
	Kind  string      `yaml:"kind"`
	Scope ScopeConfig `yaml:"scope"`
	// AcceptUntyped takes JWTs whose typ is absent or "JWT" (older senders).
	AcceptUntyped     bool `yaml:"accept_untyped"`
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"` // http:// issuer metadata and keys on loopback, for tests
}

// AuditConfig configures the audit index and its API.
type AuditConfig struct {
	// DB is the SQLite index file; default <data_dir>/audit.db.
	DB     string        `yaml:"db"`
	Tokens []TokenConfig `yaml:"tokens"`
	// BatchSize and BatchWait bound one indexer transaction.
	BatchSize int           `yaml:"batch_size"`
	BatchWait time.Duration `yaml:"batch_wait"`
	// A signed checkpoint of the chain head every CheckpointEvery records
	// or CheckpointInterval, also appended to CheckpointFile (default
	// <data_dir>/audit-checkpoints.jsonl); keep a copy of that file elsewhere.
	CheckpointEvery    int           `yaml:"checkpoint_every"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	CheckpointFile     string        `yaml:"checkpoint_file"`
}

// ConsoleConfig is the web console: who may sign in and how.
type ConsoleConfig struct {
	// Enabled serves the console at / on processes with the audit role
	// (default true). With neither oidc nor local_login nobody can sign in.
	Enabled *bool `yaml:"enabled"`
	// OIDC signs people in at the organisation's IdP (authorization code
	// with PKCE); their role comes from a claim.
	OIDC ConsoleOIDCConfig `yaml:"oidc"`
	// LocalLogin lets an audit token serve as a password, for the quick
	// start; only when listen is a loopback address.
	LocalLogin bool `yaml:"local_login"`
	// SessionLifetime bounds a sign-in (default 8h); SessionKeyFile holds
	// the key sealing session cookies (default <data_dir>/keys/console-session.key;
	// replicas behind one address share it).
	SessionLifetime time.Duration `yaml:"session_lifetime"`
	SessionKeyFile  string        `yaml:"session_key_file"`
	// SLA judges offboardings (default 1h): beyond it an incomplete one is
	// a breach, shown first.
	SLA time.Duration `yaml:"sla"`
}

// On reports whether the console is served.
func (c ConsoleConfig) On() bool { return c.Enabled == nil || *c.Enabled }

// ConsoleOIDCConfig is the console's OpenID Connect client.
type ConsoleOIDCConfig struct {
	// Issuer is the OpenID Provider (its discovery document is read at
	// start); the redirect URI to register there is <public_url>/auth/callback.
	Issuer       string   `yaml:"issuer"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret string   `yaml:"client_secret"` // empty: a public client (PKCE only)
	Scopes       []string `yaml:"scopes"`        // default openid, profile, email (plus groups when roles_claim is groups)
	// RolesClaim names the ID token claim (a string or list of strings)
	// mapped to roles: a value in Operators makes an operator, else one in
	// Auditors an auditor; anyone else is refused.
	RolesClaim string   `yaml:"roles_claim"`
	Auditors   []string `yaml:"auditors"`
	Operators  []string `yaml:"operators"`
	// AllowInsecureHTTP permits an http:// issuer on loopback, for tests.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
}

// SCIMPushConfig is a scim target's behaviour.
type SCIMPushConfig struct {
	Action string   `yaml:"action"` // deactivate (PATCH active=false; default) | delete
	Match  []string `yaml:"match"`  // userName | email | externalId, tried in order (default userName, email)
}

// TokenConfig is one API bearer token and its role.
type TokenConfig struct {
	Token string `yaml:"token"`
	Role  string `yaml:"role"` // auditor | operator
}

// Roles known to the API.
const (
	RoleAuditor  = "auditor"
	RoleOperator = "operator"
)

// TargetConfig is one authorization server (or the IdP) to revoke at.
type TargetConfig struct {
	Name     string `yaml:"name"`
	Driver   string `yaml:"driver"`
	Endpoint string `yaml:"endpoint"`
	// Issuer is the authorization server's issuer: the audience of the
	// ID-JAGs the IdP issues for it, which ties the System Log's ID-JAG
	// inventory to this target.
	Issuer        string `yaml:"issuer"`
	SubjectFormat string `yaml:"subject_format"`
	// SigningAlg is the JWS algorithm of the JWTs this target gets (the GTR
	// bearer, logout tokens, SETs, client assertions): ES256, RS256 or
	// EdDSA; empty: the signing key's own (ES256 unless keys.signing_key_file
	// holds an RSA key). Many relying parties accept only RS256.
	SigningAlg string      `yaml:"signing_alg"`
	Kinds      []string    `yaml:"kinds"`
	Scope      ScopeConfig `yaml:"scope"`
	Auth       AuthConfig  `yaml:"auth"`
	TLS        TLSConfig   `yaml:"tls"`
	// ClientID is who we are at the target: the `sub` of our signed JWTs.
	ClientID string `yaml:"client_id"`
	// Audience is the aud of logout tokens and SETs (default: the endpoint).
	Audience string `yaml:"audience"`
	// SETEvents maps kinds to the SET event a ssfpush target receives
	// (session-revoked, account-disabled, account-purged,
	// account-credential-change-required, or a full event URI).
	SETEvents   map[string]string `yaml:"set_events"`
	Concurrency int               `yaml:"concurrency"`
	Timeout     time.Duration     `yaml:"timeout"`
	MaxAttempts int               `yaml:"max_attempts"`
	Backoff     []time.Duration   `yaml:"backoff"`
	// Rate caps requests per second to this target (0: no cap).
	Rate float64 `yaml:"rate"`
	// Breaker holds jobs, without spending attempts, while the target is down.
	Breaker BreakerConfig `yaml:"breaker"`
	// MaxRetryAfter caps how long a Retry-After may hold the target.
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
	// MaxTokenLifetime is the longest access-token lifetime at the target;
	// RevokesAccessTokens says whether its revocation kills live access
	// tokens too (GTR: SHOULD). Together they give the residual exposure.
	MaxTokenLifetime    time.Duration `yaml:"max_token_lifetime"`
	RevokesAccessTokens bool          `yaml:"revokes_access_tokens"`
	// AllowInsecureHTTP permits http:// to a loopback address, for tests.
	AllowInsecureHTTP bool           `yaml:"allow_insecure_http"`
	HTTP              HTTPCallConfig `yaml:"http"`
	// SCIM is the scim driver's: what to do with the user at the
	// application's SCIM endpoint, and how to find them.
	SCIM SCIMPushConfig `yaml:"scim"`
	// Preset fills the driver, endpoint, auth and request for a known
	// provider (the README's provider table); Tenant is the tenant value
	// its URLs need (Entra tenant, Figma tenant id, Atlassian directory
	// id). BaseURL replaces the scheme and host of the preset's URLs (a
	// national cloud; a test double on loopback).
	Preset    string `yaml:"preset"`
	Tenant    string `yaml:"tenant"`
	BaseURL   string `yaml:"base_url"`
	presetErr error
	// Confirmations, when its issuer is set, says the target's
	// authorization server confirms each revocation with a signed CAEP
	// session-revoked SET pushed to our /ssf/events (GTR draft -06 §5).
	Confirmations ConfirmationsConfig `yaml:"confirmations"`
}

// ConfirmationsConfig is a target's authorization server as the transmitter
// of its completion notices.
type ConfirmationsConfig struct {
	Issuer   string `yaml:"issuer"`    // the SETs' iss
	JWKSURI  string `yaml:"jwks_uri"`  // its keys (https), or
	JWKSFile string `yaml:"jwks_file"` // fixed keys
	// Window is how long after the 2xx a confirmation may come (default 1h,
	// at most 7 days); later ones are on record as late, and the
	// revocation is listed as unconfirmed.
	Window time.Duration `yaml:"window"`
}

// BreakerConfig opens a target's breaker after Failures consecutive
// transient failures, for Cooldown, doubling up to MaxCooldown.
type BreakerConfig struct {
	Failures    int           `yaml:"failures"`
	Cooldown    time.Duration `yaml:"cooldown"`
	MaxCooldown time.Duration `yaml:"max_cooldown"`
}

// ScopeConfig restricts access_removed events to some apps or groups (by
// IdP id or display name). Empty: the target acts on every removal.
type ScopeConfig struct {
	Apps   []string `yaml:"apps"`
	Groups []string `yaml:"groups"`
}

// AuthConfig is how we authenticate to a target.
type AuthConfig struct {
	Type  string `yaml:"type"`  // signed_jwt | bearer | client_credentials | none
	Token string `yaml:"token"` // for bearer
	// Client credentials grant (RFC 6749 §4.4) at TokenURL; Method is
	// client_secret_basic, client_secret_post or private_key_jwt (our key).
	TokenURL     string `yaml:"token_url"`
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	Method       string `yaml:"method"`
	Scope        string `yaml:"scope"`
	// google_service_account: the service account's JSON key file and the
	// Workspace admin it acts for (domain-wide delegation).
	KeyFile string `yaml:"key_file"`
	Subject string `yaml:"subject"`
}

// TLSConfig is mutual TLS to a target: our client certificate, and the CA
// of its server certificate when not a public one.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// HTTPCallConfig is the templated request of the httpcall driver.
type HTTPCallConfig struct {
	Method        string            `yaml:"method"`
	Headers       map[string]string `yaml:"headers"`
	Body          string            `yaml:"body"`
	Success       []int             `yaml:"success"`
	NotApplicable []int             `yaml:"not_applicable"`
}

// Drivers known to this build: the registry (internal/revoke/drivers) sets
// them, and DriverChecks, when it is linked in; these are the defaults for
// code that loads configuration without it.
var Drivers = []string{"gtr", "backchannel", "ssfpush", "okta", "httpcall", "scim"}

// DriverChecks are the checks only a target's driver can make, and
// DriverDefaults the defaults only it knows (set by the registry; nil:
// none).
var (
	DriverChecks   func(t TargetConfig, secretsOptional bool) []error
	DriverDefaults func(t *TargetConfig, c *Config)
)

// SigningAlgs are the JWS algorithms a target can ask for.
var SigningAlgs = []string{"ES256", "RS256", "EdDSA"}

// SubjectFormats are the RFC 9493 formats a target can ask for.
var SubjectFormats = []string{"email", "iss_sub", "opaque"}

// AuthTypes are the outbound authentication methods.
var AuthTypes = []string{"signed_jwt", "bearer", "client_credentials", "google_service_account", "none"}

// Defaults returns the configuration used when no file is given; secrets
// come from the environment variables the example config names.
func Defaults() *Config {
	c := &Config{
		Okta: OktaConfig{Hook: HookConfig{Secrets: nonEmpty(os.Getenv("OKTA_HOOK_SECRET"))}},
		SCIM: SCIMConfig{Tokens: nonEmpty(os.Getenv("SCIM_TOKEN"))},
	}
	if t := os.Getenv("AUDIT_TOKEN"); t != "" {
		c.Audit.Tokens = []TokenConfig{{Token: t, Role: RoleAuditor}}
	}
	c.setDefaults()
	return c
}

func nonEmpty(s ...string) []string {
	return slices.DeleteFunc(s, func(v string) bool { return v == "" })
}

// Load reads, expands and validates a config file.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(raw)
}

// LoadForReading is Load for commands that only read (audit query, report,
// export, verify, targets list): secrets the service needs to take signals
// or call targets may be absent, since nothing here uses them.
func LoadForReading(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parse(raw, true)
}

// Parse decodes YAML with ${ENV} expansion, rejects unknown keys, applies
// defaults and validates; all problems are returned together.
func Parse(raw []byte) (*Config, error) { return parse(raw, false) }

func parse(raw []byte, lenient bool) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	expandNode(&root)
	expanded, err := yaml.Marshal(&root)
	if err != nil {
		return nil, fmt.Errorf("re-encode config: %w", err)
	}
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(expanded))
	dec.KnownFields(true)
	var errs []error
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, e := range te.Errors {
				errs = append(errs, errors.New(e))
			}
		} else {
			return nil, fmt.Errorf("parse config: %w", err)
		}
	}
	c.setDefaults()
	c.secretsOptional = lenient
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	c.secretsOptional = false
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid config:\n%w", errors.Join(errs...))
	}
	return c, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandNode replaces ${NAME} in scalar values (never in keys) with the
// environment variable's value. Expanding after parsing means a secret that
// contains YAML syntax cannot change the document's structure.
func expandNode(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			return os.Getenv(envRef.FindStringSubmatch(ref)[1])
		})
		// A value that came from the environment is a string, whatever it
		// looks like ("0123", "true").
		if n.Tag == "" || n.Tag == "!!str" || n.Style != 0 {
			n.Style = yaml.DoubleQuotedStyle
		}
		return
	}
	for i, c := range n.Content {
		if n.Kind == yaml.MappingNode && i%2 == 0 {
			continue // keys
		}
		expandNode(c)
	}
}

// The roles a process can play (docs/architecture.md, Roles).
const (
	RoleIntake   = "intake"
	RolePipeline = "pipeline"
	RolePoller   = "poller"
	RoleAudit    = "audit"
)

// AllRoles is the default: one process does everything.
var AllRoles = []string{RoleIntake, RolePipeline, RolePoller, RoleAudit}

// Has reports whether this process plays role.
func (c *Config) Has(role string) bool { return slices.Contains(c.Roles, role) }

// SetRoles overrides roles after loading ("intake,pipeline").
func (c *Config) SetRoles(list string) error {
	var roles []string
	for _, r := range strings.Split(list, ",") {
		if r = strings.TrimSpace(r); r != "" {
			roles = append(roles, r)
		}
	}
	c.Roles = roles
	return c.Validate()
}

func (c *Config) setDefaults() {
	if len(c.Roles) == 0 {
		c.Roles = slices.Clone(AllRoles)
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Listen
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if len(c.SSF.Audience) == 0 {
		c.SSF.Audience = []string{c.PublicURL}
	}
	if c.UniversalLogout.Path == "" {
		c.UniversalLogout.Path = "/global-token-revocation"
	}
	for i := range c.UniversalLogout.Issuers {
		if c.UniversalLogout.Issuers[i].Kind == "" {
			c.UniversalLogout.Issuers[i].Kind = "sessions_revoked"
		}
	}
	if c.SSF.MaxSETAge == 0 {
		c.SSF.MaxSETAge = 12 * time.Hour
	}
	for i := range c.SSF.Transmitters {
		if c.SSF.Transmitters[i].PollInterval == 0 {
			c.SSF.Transmitters[i].PollInterval = 10 * time.Second
		}
		if st := c.SSF.Transmitters[i].Stream; st != nil {
			if st.ReconcileInterval == 0 {
				st.ReconcileInterval = 5 * time.Minute
			}
			if st.VerifyEvery == 0 {
				st.VerifyEvery = 24 * time.Hour
			}
			if st.VerifyWithin == 0 {
				st.VerifyWithin = 5 * time.Minute
			}
			if st.RotateEvery == 0 {
				st.RotateEvery = 30 * 24 * time.Hour
			}
			if st.Delivery == "" {
				st.Delivery = "push"
			}
			if st.Description == "" {
				st.Description = "lifecycle-worker: revoke MCP authorization server tokens when the IdP says a person is gone"
			}
			if st.Auth.Type == "client_credentials" && st.Auth.Method == "" {
				st.Auth.Method = "client_secret_basic"
			}
		}
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.HTTP.ReadTimeout == 0 {
		c.HTTP.ReadTimeout = 10 * time.Second
	}
	if c.HTTP.WriteTimeout == 0 {
		c.HTTP.WriteTimeout = 30 * time.Second
	}
	if c.HTTP.IdleTimeout == 0 {
		c.HTTP.IdleTimeout = 120 * time.Second
	}
	if c.HTTP.MaxBodyBytes == 0 {
		c.HTTP.MaxBodyBytes = 1 << 20
	}
	if c.NATS.Replicas == 0 {
		c.NATS.Replicas = 1
	}
	if c.NATS.PublishTimeout == 0 {
		c.NATS.PublishTimeout = 2 * time.Second
	}
	if c.Okta.SystemLog.Interval == 0 {
		c.Okta.SystemLog.Interval = time.Minute
	}
	if c.Okta.SystemLog.Lookback == 0 {
		c.Okta.SystemLog.Lookback = 24 * time.Hour
	}
	if c.Okta.Hook.Header == "" {
		c.Okta.Hook.Header = "Authorization"
	}
	if c.Audit.DB == "" {
		c.Audit.DB = filepath.Join(c.DataDir, "audit.db")
	}
	if c.Audit.BatchSize == 0 {
		c.Audit.BatchSize = 500
	}
	if c.Audit.BatchWait == 0 {
		c.Audit.BatchWait = 100 * time.Millisecond // audit.DefaultBatchWait: why, there
	}
	if c.Audit.CheckpointEvery == 0 {
		c.Audit.CheckpointEvery = 10000
	}
	if c.Audit.CheckpointInterval == 0 {
		c.Audit.CheckpointInterval = time.Minute
	}
	if c.Console.SessionLifetime == 0 {
		c.Console.SessionLifetime = 8 * time.Hour
	}
	if c.Console.SessionKeyFile == "" {
		c.Console.SessionKeyFile = filepath.Join(c.DataDir, "keys", "console-session.key")
	}
	if c.Console.SLA == 0 {
		c.Console.SLA = time.Hour
	}
	if c.Console.OIDC.RolesClaim == "" {
		c.Console.OIDC.RolesClaim = "groups"
	}
	if len(c.Console.OIDC.Scopes) == 0 {
		c.Console.OIDC.Scopes = []string{"openid", "profile", "email"}
		if c.Console.OIDC.RolesClaim == "groups" {
			c.Console.OIDC.Scopes = append(c.Console.OIDC.Scopes, "groups")
		}
	}
	if c.Audit.CheckpointFile == "" {
		c.Audit.CheckpointFile = filepath.Join(c.DataDir, "audit-checkpoints.jsonl")
	}
	if c.Keys.SigningKeyFile == "" {
		c.Keys.SigningKeyFile = filepath.Join(c.DataDir, "keys", "signing-key.pem")
	}
	if c.Keys.CheckpointKeyFile == "" {
		c.Keys.CheckpointKeyFile = filepath.Join(c.DataDir, "keys", "checkpoint-key.pem")
	}
	for i := range c.Audit.Tokens {
		if c.Audit.Tokens[i].Role == "" {
			c.Audit.Tokens[i].Role = RoleAuditor
		}
	}
	for i := range c.Targets {
		t := &c.Targets[i]
		t.presetErr = t.applyPreset()
		if DriverDefaults != nil {
			DriverDefaults(t, c)
		}
		t.setDefaults()
	}
}

func (t *TargetConfig) setDefaults() {
	if t.SubjectFormat == "" {
		t.SubjectFormat = "email"
	}
	if len(t.Kinds) == 0 {
		// access_removed is opt-in: it needs a scope naming the apps or
		// groups that are the way into this target.
		t.Kinds = []string{"deprovisioned", "suspended", "sessions_revoked", "credentials_changed", "risk_elevated"}
	}
	if t.Auth.Type == "client_credentials" && t.Auth.Method == "" {
		t.Auth.Method = "client_secret_basic"
	}
	if t.Auth.Type == "" {
		t.Auth.Type = "none" // a driver that signs by default says so in its defaults
	}
	if t.ClientID == "" {
		t.ClientID = "lifecycle-worker"
	}
	if t.Audience == "" {
		t.Audience = t.Endpoint
	}
	if t.Concurrency == 0 {
		t.Concurrency = 8
	}
	if t.Timeout == 0 {
		t.Timeout = 10 * time.Second
	}
	if t.MaxAttempts == 0 {
		t.MaxAttempts = 12
	}
	if len(t.Backoff) == 0 {
		t.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute}
	}
	if t.Breaker.Failures == 0 {
		t.Breaker.Failures = 5
	}
	if t.Breaker.Cooldown == 0 {
		t.Breaker.Cooldown = 30 * time.Second
	}
	if t.Breaker.MaxCooldown == 0 {
		t.Breaker.MaxCooldown = 10 * time.Minute
	}
	if t.MaxRetryAfter == 0 {
		t.MaxRetryAfter = time.Hour
	}
	if t.Confirmations.Issuer != "" && t.Confirmations.Window == 0 {
		t.Confirmations.Window = time.Hour
	}
}

var targetName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Validate reports every problem in the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(c.Roles) == 0 {
		bad("roles: none given (choose from %s)", strings.Join(AllRoles, ", "))
	}
	for _, r := range c.Roles {
		if !slices.Contains(AllRoles, r) {
			bad("roles: %q is not one of %s", r, strings.Join(AllRoles, ", "))
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen: %q is not host:port", c.Listen)
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("public_url: %q is not an http(s) URL", c.PublicURL)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		bad("log.format: %q is not one of text, json", c.Log.Format)
	}
	if c.HTTP.MaxBodyBytes < 1024 {
		bad("http.max_body_bytes: %d is too small", c.HTTP.MaxBodyBytes)
	}
	if c.NATS.EmbeddedServer() && len(c.NATS.URLs) > 0 {
		bad("nats: embedded is true but urls are set; choose one")
	}
	if !c.NATS.EmbeddedServer() && len(c.NATS.URLs) == 0 {
		bad("nats: embedded is false and no urls are set")
	}
	if c.NATS.Replicas != 1 && c.NATS.Replicas != 3 && c.NATS.Replicas != 5 {
		bad("nats.replicas: %d must be 1, 3 or 5", c.NATS.Replicas)
	}
	if c.NATS.EmbeddedServer() && c.NATS.Replicas != 1 {
		bad("nats.replicas: the embedded server holds one replica")
	}
	errs = append(errs, c.NATS.validate(c.secretsOptional)...)
	if c.Okta.OrgURL != "" {
		if u, err := url.Parse(c.Okta.OrgURL); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && IsLoopback(u.Hostname()))) {
			bad("okta.org_url: %q is not an https URL", c.Okta.OrgURL)
		}
	}
	if c.Okta.SystemLog.Enabled {
		if c.Okta.OrgURL == "" || c.Okta.APIToken == "" {
			bad("okta.system_log: needs okta.org_url and okta.api_token")
		}
		if c.Okta.SystemLog.Interval < 100*time.Millisecond || c.Okta.SystemLog.Lookback <= 0 {
			bad("okta.system_log: interval must be >= 100ms and lookback positive")
		}
	}
	for i, s := range c.Okta.Hook.Secrets {
		if c.secretsOptional {
			break
		}
		if s == "" {
			bad("okta.hook.secrets[%d] is empty (is its environment variable set?)", i)
		} else if len(s) < 16 {
			bad("okta.hook.secrets[%d] is shorter than 16 characters", i)
		}
	}
	for i, t := range c.SCIM.Tokens {
		if len(t) < 16 && !c.secretsOptional {
			bad("scim.tokens[%d] is empty or shorter than 16 characters (is its environment variable set?)", i)
		}
	}
	ssfIssuers := map[string]bool{}
	for i, tr := range c.SSF.Transmitters {
		where := fmt.Sprintf("ssf.transmitters[%d]", i)
		if u, err := url.Parse(tr.Issuer); err != nil || u.Host == "" {
			bad("%s.issuer: %q is not a URL", where, tr.Issuer)
		} else if ssfIssuers[tr.Issuer] {
			bad("%s.issuer: %q is listed twice", where, tr.Issuer)
		}
		ssfIssuers[tr.Issuer] = true
		switch {
		case (tr.JWKSURI == "") == (tr.JWKSFile == ""):
			bad("%s: set one of jwks_uri and jwks_file", where)
		case tr.JWKSURI != "":
			if err := CheckEndpoint(tr.JWKSURI, tr.AllowInsecureHTTP); err != nil {
				bad("%s.jwks_uri: %v", where, err)
			}
		}
		for j, t := range tr.Tokens {
			if len(t) < 16 && !c.secretsOptional {
				bad("%s.tokens[%d] is empty or shorter than 16 characters (is its environment variable set?)", where, j)
			}
		}
		if st := tr.Stream; st != nil {
			if tr.PollURL != "" {
				bad("%s: a managed stream is pushed to us; poll_url is for a stream someone else configured", where)
			}
			if len(tr.Tokens) > 0 {
				bad("%s.tokens: a managed stream's token is generated; leave tokens out", where)
			}
			if st.Delivery != "" && st.Delivery != "push" && st.Delivery != "poll" {
				bad("%s.stream.delivery: %q is not push or poll", where, st.Delivery)
			}
			switch st.Auth.Type {
			case "bearer":
				if len(st.Auth.Token) < 16 && !c.secretsOptional {
					bad("%s.stream.auth.token: empty or shorter than 16 characters (is its environment variable set?)", where)
				}
			case "client_credentials":
				if err := CheckEndpoint(st.Auth.TokenURL, tr.AllowInsecureHTTP); err != nil {
					bad("%s.stream.auth.token_url: %v", where, err)
				}
				if st.Auth.ClientID == "" || (st.Auth.Method != "private_key_jwt" && st.Auth.ClientSecret == "") {
					bad("%s.stream.auth: client_credentials needs client_id and client_secret (or method private_key_jwt)", where)
				}
			default:
				bad("%s.stream.auth.type: %q is not bearer or client_credentials", where, st.Auth.Type)
			}
			if st.ReconcileInterval < time.Second || st.VerifyWithin < time.Second || st.VerifyEvery < st.VerifyWithin || st.RotateEvery < time.Hour {
				bad("%s.stream: reconcile_interval and verify_within >= 1s, verify_every >= verify_within, rotate_every >= 1h", where)
			}
			if err := CheckEndpoint(tr.Issuer, tr.AllowInsecureHTTP); err != nil {
				bad("%s.issuer: the stream is managed through the issuer's metadata: %v", where, err)
			}
		}
		if tr.PollURL != "" {
			if err := CheckEndpoint(tr.PollURL, tr.AllowInsecureHTTP); err != nil {
				bad("%s.poll_url: %v", where, err)
			}
			if tr.PollInterval < 100*time.Millisecond {
				bad("%s.poll_interval: %s is shorter than 100ms", where, tr.PollInterval)
			}
		}
	}
	if c.SSF.MaxSETAge < time.Minute || c.SSF.MaxSETAge > 24*time.Hour {
		bad("ssf.max_set_age: %s is not in [1m, 24h] (the dedup window is 24h)", c.SSF.MaxSETAge)
	}
	if p := c.UniversalLogout.Path; !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " ?#{}") ||
		slices.Contains([]string{"/hooks/okta", "/ssf/events", "/metrics", "/healthz", "/readyz"}, p) ||
		strings.HasPrefix(p, "/scim/") || strings.HasPrefix(p, "/v1/") || strings.HasPrefix(p, "/.well-known/") {
		bad("universal_logout.path: %q is not a free absolute path", p)
	}
	ulIssuers := map[string]bool{}
	for i, is := range c.UniversalLogout.Issuers {
		where := fmt.Sprintf("universal_logout.issuers[%d]", i)
		if u, err := url.Parse(is.Issuer); err != nil || u.Host == "" {
			bad("%s.issuer: %q is not a URL", where, is.Issuer)
		} else if err := CheckEndpoint(is.Issuer, is.AllowInsecureHTTP); err != nil && is.JWKSFile == "" && is.JWKSURI == "" {
			bad("%s.issuer: its metadata is fetched: %v", where, err)
		}
		if ulIssuers[is.Issuer] {
			bad("%s.issuer: %q is listed twice", where, is.Issuer)
		}
		ulIssuers[is.Issuer] = true
		if is.JWKSURI != "" && is.JWKSFile != "" {
			bad("%s: set at most one of jwks_uri and jwks_file", where)
		}
		if is.JWKSURI != "" {
			if err := CheckEndpoint(is.JWKSURI, is.AllowInsecureHTTP); err != nil {
				bad("%s.jwks_uri: %v", where, err)
			}
		}
		if !validKind(is.Kind) || is.Kind == "reactivated" || is.Kind == "access_removed" && len(is.Scope.Apps) == 0 && len(is.Scope.Groups) == 0 {
			bad("%s.kind: %q is not a kind that revokes (access_removed needs a scope)", where, is.Kind)
		}
	}
	for uri, kind := range c.SSF.EventTypes {
		if kind != "ignore" && !validKind(kind) {
			bad("ssf.event_types[%s]: unknown kind %q", uri, kind)
		}
	}
	for typ, kind := range c.Okta.EventTypes {
		if kind != "ignore" && !validKind(kind) {
			bad("okta.event_types[%s]: unknown kind %q", typ, kind)
		}
	}
	for i, t := range c.Audit.Tokens {
		if len(t.Token) < 16 && !c.secretsOptional {
			bad("audit.tokens[%d]: token is empty or shorter than 16 characters", i)
		}
		if t.Role != RoleAuditor && t.Role != RoleOperator {
			bad("audit.tokens[%d].role: %q is not auditor or operator", i, t.Role)
		}
	}
	errs = append(errs, c.validateConsole()...)
	if c.Audit.CheckpointEvery < 1 || c.Audit.CheckpointInterval < time.Second {
		bad("audit: checkpoint_every must be >= 1 and checkpoint_interval >= 1s")
	}
	if c.Audit.BatchSize < 1 || c.Audit.BatchSize > 10000 {
		bad("audit.batch_size: %d is not in 1..10000", c.Audit.BatchSize)
	}
	confirmers := map[string]bool{}
	for i, t := range c.Targets {
		if iss := t.Confirmations.Issuer; iss != "" {
			if ssfIssuers[iss] || confirmers[iss] {
				bad("targets[%d].confirmations.issuer: %q is already a transmitter; one issuer, one role", i, iss)
			}
			confirmers[iss] = true
		}
	}
	seen := map[string]bool{}
	for i, t := range c.Targets {
		where := fmt.Sprintf("targets[%d]", i)
		if t.Name != "" {
			where = fmt.Sprintf("targets[%d] (%s)", i, t.Name)
		}
		if !targetName.MatchString(t.Name) {
			bad("%s.name: %q must match %s", where, t.Name, targetName)
		} else if seen[t.Name] {
			bad("%s.name: duplicate target name", where)
		}
		seen[t.Name] = true
		for _, err := range t.validate(c.secretsOptional) {
			bad("%s.%w", where, err)
		}
	}
	return errors.Join(errs...)
}

func (n NATSConfig) validate(secretsOptional bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	tls := n.TLS.CertFile != "" || n.TLS.KeyFile != "" || n.TLS.CAFile != ""
	if n.EmbeddedServer() && n.Listen != "" {
		host, _, err := net.SplitHostPort(n.Listen)
		if err != nil {
			bad("nats.listen: %q is not host:port", n.Listen)
		}
		if len(n.Users) == 0 {
			bad("nats.listen: the listener needs nats.users; nobody may connect to the worker's NATS without credentials")
		}
		if err == nil && !IsLoopback(host) && (n.TLS.CertFile == "" || n.TLS.KeyFile == "") {
			bad("nats.listen: %q is not a loopback address; it needs nats.tls.cert_file and key_file", n.Listen)
		}
	}
	if !n.EmbeddedServer() && len(n.Users) > 0 {
		bad("nats.users: only the embedded server has users; an external cluster keeps its own")
	}
	for i, u := range n.Users {
		where := fmt.Sprintf("nats.users[%d]", i)
		if len(u.Roles) == 0 {
			bad("%s.roles: none given (choose from %s)", where, strings.Join(NATSRoles, ", "))
		}
		for _, r := range u.Roles {
			if !slices.Contains(NATSRoles, r) {
				bad("%s.roles: %q is not one of %s", where, r, strings.Join(NATSRoles, ", "))
			}
		}
		switch {
		case u.Nkey != "":
			if u.Name != "" || u.Password != "" {
				bad("%s: an nkey user has no name or password", where)
			}
			if !strings.HasPrefix(u.Nkey, "U") || len(u.Nkey) != 56 {
				bad("%s.nkey: not a public user nkey (U…, 56 characters)", where)
			}
		case u.Name == "":
			bad("%s.name: required (or nkey)", where)
		case len(u.Password) < 16 && !secretsOptional:
			bad("%s.password: empty or shorter than 16 characters (is its environment variable set?)", where)
		}
	}
	creds := 0
	for _, set := range []bool{n.User != "" || n.Password != "", n.NkeySeedFile != "", n.CredsFile != ""} {
		if set {
			creds++
		}
	}
	if creds > 1 {
		bad("nats: give one of user/password, nkey_seed_file and creds_file")
	}
	if !n.EmbeddedServer() {
		for _, raw := range n.URLs {
			u, err := url.Parse(raw)
			if err != nil || u.Host == "" {
				bad("nats.urls: %q is not a URL (nats://host:port or tls://host:port)", raw)
				continue
			}
			switch u.Scheme {
			case "nats", "tls":
			default:
				bad("nats.urls: %q: scheme must be nats or tls", raw)
				continue
			}
			if u.User != nil {
				bad("nats.urls: %q carries credentials; use nats.user and nats.password", u.Redacted())
			}
			if !IsLoopback(u.Hostname()) {
				if u.Scheme != "tls" && !tls {
					bad("nats.urls: %q is not a loopback address; use tls:// (or nats.tls) so credentials and events are encrypted", raw)
				}
				if creds == 0 {
					bad("nats.urls: %q is not a loopback address; set nats credentials (user/password, nkey_seed_file or creds_file)", raw)
				}
			}
		}
	}
	if n.StreamMaxBytes < 0 || (n.StreamMaxBytes > 0 && n.StreamMaxBytes < 1<<20) {
		bad("nats.stream_max_bytes: %d must be 0 (default) or at least 1 MiB", n.StreamMaxBytes)
	}
	return errs
}

func validKind(k string) bool {
	switch k {
	case "deprovisioned", "suspended", "sessions_revoked", "credentials_changed",
		"access_removed", "risk_elevated", "reactivated":
		return true
	}
	return false
}

func (t TargetConfig) validate(secretsOptional bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !slices.Contains(Drivers, t.Driver) {
		bad("driver: %q is not one of %v", t.Driver, Drivers)
	}
	if t.Issuer != "" {
		if u, err := url.Parse(t.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			bad("issuer: %q is not a URL", t.Issuer)
		}
	}
	if err := CheckEndpoint(t.Endpoint, t.AllowInsecureHTTP); err != nil {
		bad("endpoint: %w", err)
	}
	if !slices.Contains(SubjectFormats, t.SubjectFormat) {
		bad("subject_format: %q is not one of %v", t.SubjectFormat, SubjectFormats)
	}
	if t.SigningAlg != "" && !slices.Contains(SigningAlgs, t.SigningAlg) {
		bad("signing_alg: %q is not one of %v", t.SigningAlg, SigningAlgs)
	}
	for _, k := range t.Kinds {
		if !validKind(k) || k == "reactivated" {
			bad("kinds: %q is not a kind that revokes", k)
		}
	}
	if slices.Contains(t.Kinds, "access_removed") && len(t.Scope.Apps) == 0 && len(t.Scope.Groups) == 0 {
		bad("kinds: access_removed needs scope.apps or scope.groups")
	}
	if !slices.Contains(AuthTypes, t.Auth.Type) {
		bad("auth.type: %q is not one of %v", t.Auth.Type, AuthTypes)
	}
	if t.Auth.Type == "bearer" && t.Auth.Token == "" && !secretsOptional {
		bad("auth.token: required for bearer auth (is its environment variable set?)")
	}
	if t.Auth.Type == "client_credentials" {
		if err := CheckEndpoint(t.Auth.TokenURL, t.AllowInsecureHTTP); err != nil {
			bad("auth.token_url: %w", err)
		}
		if t.Auth.ClientID == "" {
			bad("auth.client_id: required for client_credentials")
		}
		switch t.Auth.Method {
		case "client_secret_basic", "client_secret_post":
			if t.Auth.ClientSecret == "" && !secretsOptional {
				bad("auth.client_secret: required for %s (is its environment variable set?)", t.Auth.Method)
			}
		case "private_key_jwt":
		default:
			bad("auth.method: %q is not client_secret_basic, client_secret_post or private_key_jwt", t.Auth.Method)
		}
	}
	if (t.TLS.CertFile == "") != (t.TLS.KeyFile == "") {
		bad("tls: cert_file and key_file go together")
	}
	if DriverChecks != nil {
		errs = append(errs, DriverChecks(t, secretsOptional)...)
	}
	if t.presetErr != nil {
		bad("preset: %v", t.presetErr)
	}
	if t.Auth.Type == "google_service_account" {
		if t.Auth.KeyFile == "" {
			bad("auth.key_file: the service account's JSON key is required for google_service_account")
		}
		if t.Auth.Subject == "" {
			bad("auth.subject: the Workspace admin the service account acts for is required (domain-wide delegation)")
		}
	}

	if t.Concurrency < 1 || t.Concurrency > 1024 {
		bad("concurrency: %d is not in 1..1024", t.Concurrency)
	}
	if t.Timeout <= 0 || t.Timeout > 5*time.Minute {
		bad("timeout: %s is not in (0, 5m]", t.Timeout)
	}
	if t.MaxAttempts < 1 || t.MaxAttempts > 1000 {
		bad("max_attempts: %d is not in 1..1000", t.MaxAttempts)
	}
	if t.Rate < 0 {
		bad("rate: %g is negative", t.Rate)
	}
	if t.Breaker.Failures < 1 || t.Breaker.Cooldown <= 0 || t.Breaker.MaxCooldown < t.Breaker.Cooldown {
		bad("breaker: failures >= 1 and 0 < cooldown <= max_cooldown")
	}
	if t.MaxRetryAfter <= 0 {
		bad("max_retry_after: %s is not positive", t.MaxRetryAfter)
	}
	if t.MaxTokenLifetime < 0 {
		bad("max_token_lifetime: %s is negative", t.MaxTokenLifetime)
	}
	for _, d := range t.Backoff {
		if d <= 0 {
			bad("backoff: %s is not positive", d)
		}
	}
	if c := t.Confirmations; c.Issuer != "" || c.JWKSURI != "" || c.JWKSFile != "" {
		if u, err := url.Parse(c.Issuer); err != nil || u.Host == "" {
			bad("confirmations.issuer: %q is not a URL", c.Issuer)
		}
		switch {
		case (c.JWKSURI == "") == (c.JWKSFile == ""):
			bad("confirmations: set one of jwks_uri and jwks_file")
		case c.JWKSURI != "":
			if err := CheckEndpoint(c.JWKSURI, t.AllowInsecureHTTP); err != nil {
				bad("confirmations.jwks_uri: %w", err)
			}
		}
		if c.Window <= 0 || c.Window > 7*24*time.Hour {
			bad("confirmations.window: %s is not in (0, 7d]", c.Window)
		}
	}

	return errs
}

// CheckEndpoint enforces HTTPS for outbound calls, allowing http:// only to a
// loopback host and only when the target opts in.
func CheckEndpoint(raw string, allowInsecure bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if !allowInsecure {
			return fmt.Errorf("%q is not https (set allow_insecure_http for a loopback test target)", raw)
		}
		if !IsLoopback(u.Hostname()) {
			return fmt.Errorf("%q: allow_insecure_http is only for loopback hosts", raw)
		}
		return nil
	default:
		return fmt.Errorf("%q: scheme must be https", raw)
	}
}

// IsLoopback reports whether host is localhost or a loopback IP.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SetDataDir overrides data_dir after loading, moving the paths derived from
// it that the file did not set explicitly.
func (c *Config) SetDataDir(dir string) {
	for _, p := range []*string{&c.Audit.DB, &c.Audit.CheckpointFile, &c.Keys.SigningKeyFile, &c.Keys.CheckpointKeyFile, &c.Console.SessionKeyFile} {
		if rel, err := filepath.Rel(c.DataDir, *p); err == nil && !strings.HasPrefix(rel, "..") {
			*p = filepath.Join(dir, rel)
		}
	}
	c.DataDir = dir
}

// SetListen overrides listen after loading; public_url follows it unless
// the file set one.
func (c *Config) SetListen(addr string) {
	if c.PublicURL == "http://"+c.Listen {
		c.PublicURL = "http://" + addr
	}
	c.Listen = addr
}

func (c *Config) validateConsole() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	k := c.Console
	if k.SessionLifetime < time.Minute || k.SessionLifetime > 7*24*time.Hour {
		bad("console.session_lifetime: %s is not in 1m..168h", k.SessionLifetime)
	}
	if k.SLA <= 0 {
		bad("console.sla: must be positive")
	}
	if k.LocalLogin {
		if host, _, err := net.SplitHostPort(c.Listen); err != nil || !IsLoopback(host) {
			bad("console.local_login: only when listen is a loopback address (%q is not); sign in through console.oidc instead", c.Listen)
		}
	}
	o := k.OIDC
	if o.Issuer == "" {
		if o.ClientID != "" || o.ClientSecret != "" || len(o.Auditors)+len(o.Operators) > 0 {
			bad("console.oidc: issuer is required with client_id, client_secret, auditors or operators")
		}
		return errs
	}
	if err := CheckEndpoint(o.Issuer, o.AllowInsecureHTTP); err != nil {
		bad("console.oidc.issuer: %v", err)
	}
	if o.ClientID == "" {
		bad("console.oidc.client_id: required")
	}
	if len(o.Auditors)+len(o.Operators) == 0 {
		bad("console.oidc: name the %s values that make auditors or operators; nobody could sign in", o.RolesClaim)
	}
	if !slices.Contains(o.Scopes, "openid") {
		bad("console.oidc.scopes: must include openid")
	}
	if u, err := url.Parse(c.PublicURL); err == nil && u.Scheme != "https" && !IsLoopback(u.Hostname()) {
		bad("console.oidc: public_url %q must be https (the session cookie is Secure and the IdP redirects there)", c.PublicURL)
	}
	return errs
}
