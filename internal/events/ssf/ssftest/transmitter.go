// Package ssftest is an SSF 1.0 transmitter for tests: its discovery
// metadata, JWKS, stream management endpoints (configuration, status,
// subjects, verification) and push delivery, as the SSF spec and the CAEP
// interoperability profile describe them. It checks every management
// request the receiver makes — bearer token, methods, content type,
// required members — and keeps what it found wrong in Problems.
package ssftest

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
)

// Event types the transmitter supports.
var Supported = []string{
	"https://schemas.openid.net/secevent/caep/event-type/session-revoked",
	"https://schemas.openid.net/secevent/caep/event-type/credential-change",
	"https://schemas.openid.net/secevent/risc/event-type/account-disabled",
	"https://schemas.openid.net/secevent/risc/event-type/account-purged",
}

const (
	verification  = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	streamUpdated = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
)

// Options configure the transmitter.
type Options struct {
	// ManagementToken is the bearer the management API requires.
	ManagementToken string
	// Audience is the aud of the SETs it sends (the receiver's).
	Audience string
	// Route maps a delivery endpoint_url to the address to post to (a
	// receiver's public URL is not where a test listens); nil: as given.
	Route func(string) string
	// RefuseCreate answers stream creation with this status (0: create).
	RefuseCreate int
	// DefaultSubjects is "ALL" (default) or "NONE": then events flow only
	// for subjects added to the stream.
	DefaultSubjects string
}

// Stream is the transmitter's view of the receiver's stream.
type Stream struct {
	ID              string   `json:"stream_id"`
	EventsRequested []string `json:"events_requested"`
	Method          string   `json:"method"`
	EndpointURL     string   `json:"endpoint_url"`
	Authorization   string   `json:"authorization_header"`
	Description     string   `json:"description"`
	Status          string   `json:"status"`
	Subjects        []json.RawMessage
	queue           map[string]string // poll streams: jti → SET, until acknowledged
	order           []string
}

// Transmitter is the double.
type Transmitter struct {
	Server *httptest.Server
	Issuer string
	opts   Options
	key    *rsa.PrivateKey

	mu       sync.Mutex
	stream   *Stream
	problems []string
	calls    []string // method path, in order
}

// New starts a transmitter.
func New(t testing.TB, opts Options) *Transmitter {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tr := &Transmitter{opts: opts, key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/ssf-configuration", tr.metadata)
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "tr-1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("/ssf/mgmt/stream", tr.manage(tr.configuration))
	mux.HandleFunc("/ssf/mgmt/status", tr.manage(tr.status))
	mux.HandleFunc("/ssf/mgmt/subject:add", tr.manage(tr.addSubject))
	mux.HandleFunc("/ssf/mgmt/verification", tr.manage(tr.verification))
	mux.HandleFunc("/ssf/poll/{id}", tr.manage(tr.poll))
	tr.Server = httptest.NewServer(mux)
	t.Cleanup(tr.Server.Close)
	tr.Issuer = tr.Server.URL
	return tr
}

// JWKSURL is where its keys are.
func (tr *Transmitter) JWKSURL() string { return tr.Server.URL + "/jwks.json" }

// Problems are the wrong requests it saw.
func (tr *Transmitter) Problems() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.problems)
}

// Calls are the management calls it took ("POST /ssf/mgmt/stream", …).
func (tr *Transmitter) Calls() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.calls)
}

// Stream is the receiver's stream, or nil.
func (tr *Transmitter) Stream() *Stream {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.stream == nil {
		return nil
	}
	s := *tr.stream
	return &s
}

// DeleteStream forgets the stream (as if an admin removed it).
func (tr *Transmitter) DeleteStream() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.stream = nil
}

func (tr *Transmitter) problem(format string, args ...any) {
	tr.problems = append(tr.problems, fmt.Sprintf(format, args...))
}

func (tr *Transmitter) metadata(w http.ResponseWriter, _ *http.Request) {
	base := tr.Server.URL
	writeJSON(w, 200, map[string]any{
		"spec_version": "1_0", "issuer": tr.Issuer, "jwks_uri": base + "/jwks.json",
		"delivery_methods_supported": []string{"urn:ietf:rfc:8935", "urn:ietf:rfc:8936"},
		"configuration_endpoint":     base + "/ssf/mgmt/stream", "status_endpoint": base + "/ssf/mgmt/status",
		"add_subject_endpoint": base + "/ssf/mgmt/subject:add", "verification_endpoint": base + "/ssf/mgmt/verification",
		"authorization_schemes": []map[string]string{{"spec_urn": "urn:ietf:rfc:6749"}}, "default_subjects": cmp.Or(tr.opts.DefaultSubjects, "ALL"),
	})
}

// manage checks what every management call must have.
func (tr *Transmitter) manage(h func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		tr.calls = append(tr.calls, r.Method+" "+r.URL.Path)
		if r.Header.Get("Authorization") != "Bearer "+tr.opts.ManagementToken {
			tr.problem("%s %s without the management bearer token", r.Method, r.URL.Path)
			writeJSON(w, 401, map[string]string{"error": "unauthorized"})
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if len(body) > 0 && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			tr.problem("%s %s with Content-Type %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
			writeJSON(w, 400, map[string]string{"error": "content type"})
			return
		}
		h(w, r, body)
	}
}

func (tr *Transmitter) config() map[string]any {
	s := tr.stream
	delivered := []string{}
	for _, e := range s.EventsRequested {
		if slices.Contains(Supported, e) {
			delivered = append(delivered, e)
		}
	}
	return map[string]any{"stream_id": s.ID, "iss": tr.Issuer, "aud": tr.opts.Audience, "events_supported": Supported,
		"events_requested": s.EventsRequested, "events_delivered": delivered, "description": s.Description,
		"delivery": map[string]string{"method": s.Method, "endpoint_url": s.EndpointURL}, "min_verification_interval": 0}
}

type streamBody struct {
	StreamID        string   `json:"stream_id"`
	EventsRequested []string `json:"events_requested"`
	Description     string   `json:"description"`
	Delivery        *struct {
		Method              string `json:"method"`
		EndpointURL         string `json:"endpoint_url"`
		AuthorizationHeader string `json:"authorization_header"`
	} `json:"delivery"`
}

func (tr *Transmitter) configuration(w http.ResponseWriter, r *http.Request, body []byte) {
	var b streamBody
	if len(body) > 0 {
		if err := json.Unmarshal(body, &b); err != nil {
			tr.problem("%s stream: body is not a stream configuration: %v", r.Method, err)
			writeJSON(w, 400, map[string]string{"error": "bad body"})
			return
		}
	}
	switch r.Method {
	case http.MethodGet:
		id := r.URL.Query().Get("stream_id")
		switch {
		case id == "" && tr.stream == nil:
			writeJSON(w, 200, []any{})
		case id == "":
			writeJSON(w, 200, []any{tr.config()})
		case tr.stream == nil || tr.stream.ID != id:
			w.WriteHeader(404)
		default:
			writeJSON(w, 200, tr.config())
		}
	case http.MethodPost:
		if tr.opts.RefuseCreate != 0 {
			writeJSON(w, tr.opts.RefuseCreate, map[string]string{"error": "refused"})
			return
		}
		if tr.stream != nil {
			writeJSON(w, 409, map[string]string{"error": "one stream per receiver"})
			return
		}
		if b.StreamID != "" {
			tr.problem("create with a stream_id (it is the transmitter's)")
		}
		if !tr.checkDelivery(b) {
			writeJSON(w, 400, map[string]string{"error": "delivery"})
			return
		}
		id := strings.ReplaceAll(uuid.NewString(), "-", "")
		tr.stream = &Stream{ID: id, EventsRequested: b.EventsRequested, Method: b.Delivery.Method,
			EndpointURL: b.Delivery.EndpointURL, Authorization: b.Delivery.AuthorizationHeader, Description: b.Description, Status: "enabled"}
		if b.Delivery.Method == "urn:ietf:rfc:8936" { // we name the poll endpoint
			tr.stream.EndpointURL, tr.stream.queue = tr.Server.URL+"/ssf/poll/"+id, map[string]string{}
		}
		writeJSON(w, 201, tr.config())
	case http.MethodPatch:
		if b.StreamID == "" {
			tr.problem("PATCH without stream_id")
			writeJSON(w, 400, map[string]string{"error": "stream_id"})
			return
		}
		if tr.stream == nil || tr.stream.ID != b.StreamID {
			w.WriteHeader(404)
			return
		}
		if b.Delivery != nil {
			if !tr.checkDelivery(b) {
				writeJSON(w, 400, map[string]string{"error": "delivery"})
				return
			}
			if b.Delivery.Method != tr.stream.Method || b.Delivery.Method == "urn:ietf:rfc:8935" {
				tr.stream.Method, tr.stream.EndpointURL, tr.stream.Authorization = b.Delivery.Method, b.Delivery.EndpointURL, b.Delivery.AuthorizationHeader
				if b.Delivery.Method == "urn:ietf:rfc:8936" {
					tr.stream.EndpointURL, tr.stream.queue = tr.Server.URL+"/ssf/poll/"+tr.stream.ID, map[string]string{}
				}
			}
		}
		if b.EventsRequested != nil {
			tr.stream.EventsRequested = b.EventsRequested
		}
		if b.Description != "" {
			tr.stream.Description = b.Description
		}
		writeJSON(w, 200, tr.config())
	case http.MethodDelete:
		id := r.URL.Query().Get("stream_id")
		if tr.stream == nil || tr.stream.ID != id {
			w.WriteHeader(404)
			return
		}
		tr.stream = nil
		w.WriteHeader(204)
	default:
		tr.problem("%s on the configuration endpoint", r.Method)
		w.WriteHeader(405)
	}
}

func (tr *Transmitter) checkDelivery(b streamBody) bool {
	if b.Delivery != nil && b.Delivery.Method == "urn:ietf:rfc:8936" {
		if b.Delivery.EndpointURL != "" || b.Delivery.AuthorizationHeader != "" {
			tr.problem("a poll stream's endpoint_url is the transmitter's to name; got %q", b.Delivery.EndpointURL)
			return false
		}
		if len(b.EventsRequested) == 0 {
			tr.problem("no events_requested")
			return false
		}
		return true
	}
	switch {
	case b.Delivery == nil:
		tr.problem("stream without delivery (we expect push)")
	case b.Delivery.Method != "urn:ietf:rfc:8935":
		tr.problem("delivery method %q", b.Delivery.Method)
	case !strings.HasPrefix(b.Delivery.EndpointURL, "https://") && !strings.HasPrefix(b.Delivery.EndpointURL, "http://127.0.0.1"):
		tr.problem("endpoint_url %q is not https", b.Delivery.EndpointURL)
	case !strings.HasPrefix(b.Delivery.AuthorizationHeader, "Bearer ") || len(b.Delivery.AuthorizationHeader) < 30:
		tr.problem("authorization_header %q is not a strong bearer token", b.Delivery.AuthorizationHeader)
	case len(b.EventsRequested) == 0:
		tr.problem("no events_requested")
	default:
		return true
	}
	return false
}

func (tr *Transmitter) status(w http.ResponseWriter, r *http.Request, _ []byte) {
	if r.Method != http.MethodGet {
		tr.problem("%s on the status endpoint", r.Method)
		w.WriteHeader(405)
		return
	}
	if tr.stream == nil || r.URL.Query().Get("stream_id") != tr.stream.ID {
		w.WriteHeader(404)
		return
	}
	writeJSON(w, 200, map[string]string{"stream_id": tr.stream.ID, "status": tr.stream.Status})
}

func (tr *Transmitter) addSubject(w http.ResponseWriter, r *http.Request, body []byte) {
	var b struct {
		StreamID string          `json:"stream_id"`
		Subject  json.RawMessage `json:"subject"`
	}
	if json.Unmarshal(body, &b) != nil || tr.stream == nil || b.StreamID != tr.stream.ID || len(b.Subject) == 0 {
		tr.problem("add subject: %s", body)
		w.WriteHeader(400)
		return
	}
	tr.stream.Subjects = append(tr.stream.Subjects, b.Subject)
	w.WriteHeader(200)
}

func (tr *Transmitter) verification(w http.ResponseWriter, r *http.Request, body []byte) {
	var b struct {
		StreamID string `json:"stream_id"`
		State    string `json:"state"`
	}
	if r.Method != http.MethodPost || json.Unmarshal(body, &b) != nil || b.StreamID == "" {
		tr.problem("verification request %s %s", r.Method, body)
		w.WriteHeader(400)
		return
	}
	if tr.stream == nil || b.StreamID != tr.stream.ID {
		w.WriteHeader(404)
		return
	}
	w.WriteHeader(204)
	s := *tr.stream
	go func() { // delivered after the answer, as a transmitter does
		_ = tr.push(s, map[string]any{"format": "opaque", "id": s.ID}, verification, map[string]any{"state": b.State})
	}()
}

// poll serves RFC 8936: acknowledged SETs go, the others come (again).
func (tr *Transmitter) poll(w http.ResponseWriter, r *http.Request, body []byte) {
	var b struct {
		Ack               []string                     `json:"ack"`
		SetErrs           map[string]map[string]string `json:"setErrs"`
		MaxEvents         *int                         `json:"maxEvents"`
		ReturnImmediately bool                         `json:"returnImmediately"`
	}
	if r.Method != http.MethodPost || json.Unmarshal(body, &b) != nil || b.MaxEvents == nil {
		tr.problem("poll request %s %s (RFC 8936 needs maxEvents)", r.Method, body)
		w.WriteHeader(400)
		return
	}
	s := tr.stream
	if s == nil || s.ID != r.PathValue("id") || s.Method != "urn:ietf:rfc:8936" {
		w.WriteHeader(404)
		return
	}
	for _, jti := range b.Ack {
		delete(s.queue, jti)
	}
	for jti := range b.SetErrs {
		delete(s.queue, jti)
	}
	sets := map[string]string{}
	for _, jti := range s.order {
		if set, ok := s.queue[jti]; ok && len(sets) < *b.MaxEvents {
			sets[jti] = set
		}
	}
	writeJSON(w, 200, map[string]any{"sets": sets, "moreAvailable": len(s.queue) > len(sets)})
}

// Queued is how many SETs a poll stream holds unacknowledged.
func (tr *Transmitter) Queued() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.stream == nil {
		return 0
	}
	return len(tr.stream.queue)
}

// Push signs a SET of eventType about subID and delivers it to the stream,
// as the transmitter would; it returns the receiver's answer.
func (tr *Transmitter) Push(subID map[string]any, eventType string, body map[string]any) (int, error) {
	s := tr.Stream()
	if s == nil {
		return 0, fmt.Errorf("no stream")
	}
	return tr.pushStatus(*s, subID, eventType, body)
}

// SetStatus changes the stream's status and announces it with a
// stream-updated SET.
func (tr *Transmitter) SetStatus(status, reason string) (int, error) {
	tr.mu.Lock()
	if tr.stream == nil {
		tr.mu.Unlock()
		return 0, fmt.Errorf("no stream")
	}
	tr.stream.Status = status
	s := *tr.stream
	tr.mu.Unlock()
	return tr.pushStatus(s, map[string]any{"format": "opaque", "id": s.ID}, streamUpdated, map[string]any{"status": status, "reason": reason})
}

func (tr *Transmitter) push(s Stream, subID map[string]any, eventType string, body map[string]any) error {
	_, err := tr.pushStatus(s, subID, eventType, body)
	return err
}

func (tr *Transmitter) pushStatus(s Stream, subID map[string]any, eventType string, body map[string]any) (int, error) {
	claims := map[string]any{"iss": tr.Issuer, "aud": tr.opts.Audience, "jti": uuid.NewString(), "iat": time.Now().Unix(),
		"sub_id": subID, "events": map[string]any{eventType: body}}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: tr.key}, (&jose.SignerOptions{}).WithType("secevent+jwt").WithHeader("kid", "tr-1"))
	if err != nil {
		return 0, err
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		return 0, err
	}
	set, _ := obj.CompactSerialize()
	if s.Method == "urn:ietf:rfc:8936" { // held for the receiver's next poll
		tr.mu.Lock()
		if tr.stream != nil && tr.stream.ID == s.ID {
			jti := claims["jti"].(string)
			tr.stream.queue[jti], tr.stream.order = set, append(tr.stream.order, jti)
		}
		tr.mu.Unlock()
		return http.StatusAccepted, nil
	}
	url := s.EndpointURL
	if tr.opts.Route != nil {
		url = tr.opts.Route(url)
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(set)))
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if s.Authorization != "" {
		req.Header.Set("Authorization", s.Authorization)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
