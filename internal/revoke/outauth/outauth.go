// Package outauth is how we authenticate to targets that want an OAuth
// access token rather than our signed JWT: the client credentials grant
// with client_secret_basic, client_secret_post or private_key_jwt (RFC 7523,
// a client assertion signed with our key), or a JWT used as the grant
// itself (RFC 7523 §2.1, as Google service accounts do), with the token
// cached until shortly before it expires; and mutual TLS for any driver.
package outauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
)

// Static is a fixed bearer token.
type Static string

// Token returns the token.
func (s Static) Token(context.Context) (string, error) { return string(s), nil }

// Methods of client authentication at the token endpoint.
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
	PrivateKeyJWT     = "private_key_jwt"
	// JWTBearer is not client authentication but a grant: the assertion,
	// signed with the Assertion key, is the authorization (RFC 7523 §2.1).
	JWTBearer = "jwt_bearer"
)

// GrantJWTBearer is RFC 7523's grant type.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// AssertionType is RFC 7523's client_assertion_type.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// ClientCredentials gets and caches access tokens.
type ClientCredentials struct {
	TokenURL string
	ClientID string
	Secret   string // for the client_secret methods
	Method   string
	Scope    string
	Signer   *keys.Signer // for private_key_jwt
	// For the JWT bearer grant: the key that signs the assertion (e.g. a
	// Google service account's) and the user it acts for (sub).
	Assertion *keys.Signer
	Subject   string
	Client    *http.Client
	Now       func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

// Validate checks the configuration.
func (c *ClientCredentials) Validate() error {
	var errs []error
	if c.TokenURL == "" || c.ClientID == "" || c.Client == nil || c.Now == nil {
		errs = append(errs, errors.New("client credentials: token url, client id, http client and clock are required"))
	}
	switch c.Method {
	case ClientSecretBasic, ClientSecretPost:
		if c.Secret == "" {
			errs = append(errs, errors.New("client credentials: a client secret is required for "+c.Method))
		}
	case PrivateKeyJWT:
		if c.Signer == nil {
			errs = append(errs, errors.New("client credentials: private_key_jwt needs our signing key"))
		}
	case JWTBearer:
		if c.Assertion == nil {
			errs = append(errs, errors.New("jwt bearer grant: the assertion key is required"))
		}
	default:
		errs = append(errs, fmt.Errorf("client credentials: unknown method %q", c.Method))
	}
	return errors.Join(errs...)
}

// Token returns a cached access token, or gets a new one.
func (c *ClientCredentials) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.Now()
	if c.token != "" && now.Before(c.expires) {
		return c.token, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if c.Scope != "" && c.Method != JWTBearer {
		form.Set("scope", c.Scope)
	}
	switch c.Method {
	case JWTBearer:
		claims := map[string]any{"iss": c.ClientID, "aud": c.TokenURL, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if c.Subject != "" {
			claims["sub"] = c.Subject
		}
		if c.Scope != "" {
			claims["scope"] = c.Scope
		}
		assertion, err := c.Assertion.Sign("JWT", claims)
		if err != nil {
			return "", fmt.Errorf("grant assertion: %w", err)
		}
		form = url.Values{"grant_type": {GrantJWTBearer}, "assertion": {assertion}}
	case ClientSecretPost:
		form.Set("client_id", c.ClientID)
		form.Set("client_secret", c.Secret)
	case PrivateKeyJWT:
		assertion, err := c.Signer.Sign("JWT", map[string]any{
			"iss": c.ClientID, "sub": c.ClientID, "aud": c.TokenURL, "jti": uuid.NewString(),
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		})
		if err != nil {
			return "", fmt.Errorf("client assertion: %w", err)
		}
		form.Set("client_id", c.ClientID)
		form.Set("client_assertion_type", AssertionType)
		form.Set("client_assertion", assertion)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.Method == ClientSecretBasic {
		// RFC 6749 §2.3.1: form-urlencode both before Basic.
		req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.Secret))
	}
	// Never follow a redirect with our client secret or assertion.
	client := *c.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Error       string `json:"error"`
	}
	_ = json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		return "", &TokenError{Status: resp.StatusCode, Code: tr.Error}
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return "", fmt.Errorf("token endpoint issued a %q token, not a bearer token", tr.TokenType)
	}
	life := time.Duration(tr.ExpiresIn) * time.Second
	if life <= 0 {
		life = 5 * time.Minute
	}
	// Renew a little early, so a token never expires in flight.
	c.token, c.expires = tr.AccessToken, now.Add(life-min(life/10, 30*time.Second))
	return c.token, nil
}

// TokenError is a refusal from the token endpoint (never carries secrets).
type TokenError struct {
	Status int
	Code   string
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("token endpoint answered HTTP %d %s", e.Status, e.Code)
}

// Permanent reports whether no retry can fix it (bad credentials, bad
// client): 4xx other than 429.
func (e *TokenError) Permanent() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests
}

// TLS builds a client TLS config for mutual TLS: our certificate and key,
// and optionally the CA that signs the target's certificate.
func TLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("mtls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("mtls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("mtls ca: no certificate in " + caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// ServiceAccount is a Google service account key file: who it is, where it
// gets tokens, and its private key.
type ServiceAccount struct {
	Email    string
	TokenURI string
	Key      *keys.Signer
}

// LoadServiceAccount reads a Google service account key (JSON, type
// service_account).
func LoadServiceAccount(path string) (*ServiceAccount, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("service account key: %w", err)
	}
	var f struct {
		Type        string `json:"type"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
		TokenURI    string `json:"token_uri"`
	}
	if err := json.Unmarshal(raw, &f); err != nil || f.Type != "service_account" || f.ClientEmail == "" || f.PrivateKey == "" {
		return nil, fmt.Errorf("%s: not a service account key (type service_account, client_email, private_key)", path)
	}
	key, err := keys.Parse([]byte(f.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.TokenURI == "" {
		f.TokenURI = "https://oauth2.googleapis.com/token"
	}
	return &ServiceAccount{Email: f.ClientEmail, TokenURI: f.TokenURI, Key: key}, nil
}
