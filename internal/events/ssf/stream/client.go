// Package stream manages a Shared Signals stream from the receiver's side
// (SSF 1.0 §7, the CAEP interoperability profile): Okta, Keycloak and SGNL
// expect the receiver to create its stream through the transmitter's
// management API. The Client speaks that API; the Manager keeps one
// stream per transmitter pointed at our /ssf/events with a bearer token it
// generates and rotates, asks for verification and watches its status.
package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Delivery methods (SSF 1.0 §"Delivery").
const (
	MethodPush = "urn:ietf:rfc:8935"
	MethodPoll = "urn:ietf:rfc:8936"
)

// Metadata is the transmitter's /.well-known/ssf-configuration.
type Metadata struct {
	SpecVersion              string   `json:"spec_version,omitempty"`
	Issuer                   string   `json:"issuer"`
	JWKSURI                  string   `json:"jwks_uri,omitempty"`
	DeliveryMethodsSupported []string `json:"delivery_methods_supported,omitempty"`
	ConfigurationEndpoint    string   `json:"configuration_endpoint,omitempty"`
	StatusEndpoint           string   `json:"status_endpoint,omitempty"`
	AddSubjectEndpoint       string   `json:"add_subject_endpoint,omitempty"`
	RemoveSubjectEndpoint    string   `json:"remove_subject_endpoint,omitempty"`
	VerificationEndpoint     string   `json:"verification_endpoint,omitempty"`
	DefaultSubjects          string   `json:"default_subjects,omitempty"`
}

// Delivery is a stream's delivery method.
type Delivery struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

// Config is a stream's configuration object.
type Config struct {
	StreamID                string          `json:"stream_id,omitempty"`
	Iss                     string          `json:"iss,omitempty"`
	Aud                     json.RawMessage `json:"aud,omitempty"`
	EventsSupported         []string        `json:"events_supported,omitempty"`
	EventsRequested         []string        `json:"events_requested,omitempty"`
	EventsDelivered         []string        `json:"events_delivered,omitempty"`
	Delivery                *Delivery       `json:"delivery,omitempty"`
	MinVerificationInterval int             `json:"min_verification_interval,omitempty"`
	Description             string          `json:"description,omitempty"`
}

// Status is a stream's status.
type Status struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"` // enabled | paused | disabled
	Reason   string `json:"reason,omitempty"`
}

// TokenSource gives the bearer token for the management API (static, or
// OAuth client credentials with scope ssf.manage).
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// Client calls one transmitter's management API.
type Client struct {
	Issuer string
	HTTP   *http.Client // refuses redirects, has a timeout
	Tokens TokenSource
	// CheckURL vets every endpoint the metadata names before it is called
	// (https; loopback http only in tests).
	CheckURL func(string) error
	meta     *Metadata
}

// APIError is a management call the transmitter refused.
type APIError struct {
	Op     string
	Status int
	Body   string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: HTTP %d %s", e.Op, e.Status, strings.TrimSpace(e.Body))
}

// ErrNotFound: the stream does not exist (any more).
var ErrNotFound = errors.New("stream not found")

// Discover reads and checks the transmitter's metadata: its issuer must be
// the one configured, and every endpoint must pass CheckURL.
func (c *Client) Discover(ctx context.Context) (*Metadata, error) {
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("issuer %q is not a URL", c.Issuer)
	}
	wk := u.Scheme + "://" + u.Host + "/.well-known/ssf-configuration" + strings.TrimRight(u.EscapedPath(), "/")
	var m Metadata
	if err := c.do(ctx, "discover", http.MethodGet, wk, nil, &m, false); err != nil {
		return nil, err
	}
	if strings.TrimRight(m.Issuer, "/") != strings.TrimRight(c.Issuer, "/") {
		return nil, fmt.Errorf("discover: %s names issuer %q, not %q", wk, m.Issuer, c.Issuer)
	}
	for _, ep := range []string{m.ConfigurationEndpoint, m.StatusEndpoint, m.AddSubjectEndpoint, m.RemoveSubjectEndpoint, m.VerificationEndpoint} {
		if ep != "" && c.CheckURL != nil {
			if err := c.CheckURL(ep); err != nil {
				return nil, fmt.Errorf("discover: endpoint %w", err)
			}
		}
	}
	if m.ConfigurationEndpoint == "" {
		return nil, errors.New("discover: the transmitter has no configuration_endpoint (no stream management)")
	}
	c.meta = &m
	return &m, nil
}

func (c *Client) metadata(ctx context.Context) (*Metadata, error) {
	if c.meta != nil {
		return c.meta, nil
	}
	return c.Discover(ctx)
}

// List returns our streams at the transmitter.
func (c *Client) List(ctx context.Context) ([]Config, error) {
	m, err := c.metadata(ctx)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := c.do(ctx, "list streams", http.MethodGet, m.ConfigurationEndpoint, nil, &raw, true); err != nil {
		return nil, err
	}
	var many []Config
	if json.Unmarshal(raw, &many) == nil {
		return many, nil
	}
	var one Config // a transmitter with one stream per receiver may answer the object
	if err := json.Unmarshal(raw, &one); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	if one.StreamID == "" {
		return nil, nil
	}
	return []Config{one}, nil
}

// Get reads one stream.
func (c *Client) Get(ctx context.Context, id string) (*Config, error) {
	m, err := c.metadata(ctx)
	if err != nil {
		return nil, err
	}
	var s Config
	err = c.do(ctx, "read stream", http.MethodGet, withID(m.ConfigurationEndpoint, id), nil, &s, true)
	return &s, err
}

// Create makes a stream (201).
func (c *Client) Create(ctx context.Context, want Config) (*Config, error) {
	m, err := c.metadata(ctx)
	if err != nil {
		return nil, err
	}
	var s Config
	if err := c.do(ctx, "create stream", http.MethodPost, m.ConfigurationEndpoint, want, &s, true); err != nil {
		return nil, err
	}
	if s.StreamID == "" {
		return nil, errors.New("create stream: the answer has no stream_id")
	}
	return &s, nil
}

// Update changes the receiver-supplied fields of a stream (PATCH).
func (c *Client) Update(ctx context.Context, change Config) (*Config, error) {
	m, err := c.metadata(ctx)
	if err != nil {
		return nil, err
	}
	var s Config
	err = c.do(ctx, "update stream", http.MethodPatch, m.ConfigurationEndpoint, change, &s, true)
	return &s, err
}

// Delete removes a stream (204).
func (c *Client) Delete(ctx context.Context, id string) error {
	m, err := c.metadata(ctx)
	if err != nil {
		return err
	}
	return c.do(ctx, "delete stream", http.MethodDelete, withID(m.ConfigurationEndpoint, id), nil, nil, true)
}

// Status reads a stream's status.
func (c *Client) Status(ctx context.Context, id string) (*Status, error) {
	m, err := c.metadata(ctx)
	if err != nil {
		return nil, err
	}
	if m.StatusEndpoint == "" {
		return nil, errors.New("the transmitter has no status_endpoint")
	}
	var s Status
	err = c.do(ctx, "read status", http.MethodGet, withID(m.StatusEndpoint, id), nil, &s, true)
	return &s, err
}

// Verify asks for a verification SET echoing state (204).
func (c *Client) Verify(ctx context.Context, id, state string) error {
	m, err := c.metadata(ctx)
	if err != nil {
		return err
	}
	if m.VerificationEndpoint == "" {
		return errors.New("the transmitter has no verification_endpoint")
	}
	return c.do(ctx, "request verification", http.MethodPost, m.VerificationEndpoint, map[string]string{"stream_id": id, "state": state}, nil, true)
}

// AddSubject adds a subject to the stream.
func (c *Client) AddSubject(ctx context.Context, id string, subject map[string]any) error {
	m, err := c.metadata(ctx)
	if err != nil {
		return err
	}
	if m.AddSubjectEndpoint == "" {
		return errors.New("the transmitter has no add_subject_endpoint")
	}
	return c.do(ctx, "add subject", http.MethodPost, m.AddSubjectEndpoint, map[string]any{"stream_id": id, "subject": subject, "verified": true}, nil, true)
}

func withID(endpoint, id string) string {
	sep := "?"
	if strings.Contains(endpoint, "?") {
		sep = "&"
	}
	return endpoint + sep + "stream_id=" + url.QueryEscape(id)
}

// do sends one request; the answer (any 2xx) decodes into out when given.
func (c *Client) do(ctx context.Context, op, method, u string, in, out any, auth bool) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth {
		if c.Tokens == nil {
			return fmt.Errorf("%s: no credentials for the transmitter's management API", op)
		}
		tok, err := c.Tokens.Token(ctx)
		if err != nil {
			return fmt.Errorf("%s: token: %w", op, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusNotFound && op != "discover" {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &APIError{Op: op, Status: resp.StatusCode, Body: string(raw[:min(len(raw), 512)])}
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s: the answer is not the JSON expected: %w", op, err)
		}
	}
	return nil
}
