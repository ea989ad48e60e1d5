// Package gtrtest is a Global Token Revocation receiver for tests and the
// benchmark. Like a real authorization server it checks everything a sender
// must get right — method, media type, the bearer JWT's signature against
// the sender's JWKS, its typ, iss, aud, exp and a never-seen jti, and the
// sub_id — and it answers with a scripted status per request.
package gtrtest

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Request is one accepted, verified revocation request.
type Request struct {
	SubID    map[string]string
	JTI      string
	Issuer   string
	Subject  string // the caller (client id)
	Audience string
	Header   map[string]any // JOSE header
	Status   int            // what the receiver answered
	At       time.Time
}

// Receiver is a GTR endpoint on loopback.
type Receiver struct {
	Server *httptest.Server
	// URL is the revocation endpoint (the JWT's expected aud).
	URL string

	issuer  string
	jwksURL string
	client  *http.Client

	mu       sync.Mutex
	keys     *jose.JSONWebKeySet
	jtis     map[string]bool
	requests []Request
	rejected []string
	script   func(n int, subID map[string]string) int
	onReject func(string)
	calls    int
	arrived  int
	release  chan struct{}
	okBy     map[string]int // 2xx answers per subject key
}

// Options configure a receiver.
type Options struct {
	// Issuer is the expected iss; JWKSURL where to fetch the keys (lazily,
	// at the first request, as an AS would).
	Issuer  string
	JWKSURL string
	// Script picks the status of the n-th request (1-based) for a subject;
	// nil answers 204 to everything.
	Script func(n int, subID map[string]string) int
	// Delay, if set, is waited before answering (honouring the request's
	// cancellation).
	Delay time.Duration
	// HoldAfter, if positive, makes every request after the first
	// HoldAfter wait (before it is verified or counted) until Release is
	// called or the caller gives up: a target that hangs mid-run.
	HoldAfter int
	// OnReject, if set, is told why a request was refused.
	OnReject func(why string)
	// Listen is the address to serve on; empty picks a free loopback port.
	Listen string
	// TLS, when set, serves https with its certificates.
	TLS *tls.Config
	// URL, when set, is the endpoint as senders name it (the expected aud),
	// where that differs from the listener's address (a container network).
	URL string
}

// New starts a receiver at <server>/global-token-revocation.
func New(opts Options) *Receiver {
	r := &Receiver{issuer: opts.Issuer, jwksURL: opts.JWKSURL, client: &http.Client{Timeout: 5 * time.Second}, jtis: map[string]bool{}, script: opts.Script, onReject: opts.OnReject, release: make(chan struct{}), okBy: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/global-token-revocation", func(w http.ResponseWriter, req *http.Request) {
		if opts.Delay > 0 {
			// Read the body first: only then does net/http watch the
			// connection and cancel the context when the caller gives up.
			body, _ := io.ReadAll(io.LimitReader(req.Body, 64<<10))
			req.Body = io.NopCloser(bytes.NewReader(body))
			select {
			case <-time.After(opts.Delay):
			case <-req.Context().Done():
				return
			}
		}
		r.mu.Lock()
		r.arrived++
		hold := opts.HoldAfter > 0 && r.arrived > opts.HoldAfter
		r.mu.Unlock()
		if hold {
			select {
			case <-r.release:
			case <-req.Context().Done():
				return
			}
		}
		r.serve(w, req)
	})
	// What succeeded, for a test that cannot call Succeeded (a container).
	mux.HandleFunc("GET /succeeded", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Succeeded())
	})
	r.Server = httptest.NewUnstartedServer(mux)
	if opts.Listen != "" {
		ln, err := net.Listen("tcp", opts.Listen)
		if err != nil {
			panic(fmt.Sprintf("gtrtest: listen %s: %v", opts.Listen, err))
		}
		r.Server.Listener.Close()
		r.Server.Listener = ln
	}
	if opts.TLS != nil {
		r.Server.TLS = opts.TLS
		r.Server.StartTLS()
	} else {
		r.Server.Start()
	}
	r.URL = r.Server.URL + "/global-token-revocation"
	if opts.URL != "" {
		r.URL = opts.URL
	}
	return r
}

// Close stops the receiver.
func (r *Receiver) Close() { r.Server.Close() }

// SetScript replaces the status script.
func (r *Receiver) SetScript(s func(n int, subID map[string]string) int) {
	r.mu.Lock()
	r.script = s
	r.mu.Unlock()
}

// Requests returns the verified requests so far.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.requests...)
}

// Rejected returns why requests were refused (wrong JWT, body, …). A
// correct sender leaves it empty.
func (r *Receiver) Rejected() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.rejected...)
}

// Succeeded returns, per subject key (email, or iss|sub, or id), how many
// requests were answered 2xx.
func (r *Receiver) Succeeded() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.okBy)
}

// SucceededSubjects is how many distinct subjects were answered 2xx.
func (r *Receiver) SucceededSubjects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.okBy)
}

// Key is a subject identifier as one string.
func Key(sid map[string]string) string {
	switch sid["format"] {
	case "email":
		return sid["email"]
	case "iss_sub":
		return sid["iss"] + "|" + sid["sub"]
	}
	return sid["id"]
}

func (r *Receiver) refuse(w http.ResponseWriter, status int, why string) {
	r.mu.Lock()
	r.rejected = append(r.rejected, why)
	r.mu.Unlock()
	if r.onReject != nil {
		r.onReject(why)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": why})
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		r.refuse(w, http.StatusMethodNotAllowed, "method "+req.Method)
		return
	}
	if mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); mt != "application/json" {
		r.refuse(w, http.StatusBadRequest, "content type "+req.Header.Get("Content-Type"))
		return
	}
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok {
		r.refuse(w, http.StatusUnauthorized, "no bearer token")
		return
	}
	r.mu.Lock()
	noKeys := r.jwksURL == ""
	r.mu.Unlock()
	if noKeys {
		// Told nowhere to find the sender's keys yet (tests set them once
		// the worker listens): a transient failure, as an AS whose key
		// fetch failed would answer, not a verdict on the token.
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	hdr, cl, err := r.verify(tok)
	if err != nil {
		r.refuse(w, http.StatusUnauthorized, err.Error())
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
	if err != nil {
		r.refuse(w, http.StatusBadRequest, "read body")
		return
	}
	var payload struct {
		SubID map[string]string `json:"sub_id"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&payload); err != nil || payload.SubID == nil {
		r.refuse(w, http.StatusBadRequest, "body is not {\"sub_id\":{…}}: "+string(body))
		return
	}
	if err := checkSubID(payload.SubID); err != nil {
		r.refuse(w, http.StatusBadRequest, err.Error())
		return
	}
	r.mu.Lock()
	r.calls++
	status := http.StatusNoContent
	if r.script != nil {
		status = r.script(r.calls, payload.SubID)
	}
	r.requests = append(r.requests, Request{SubID: payload.SubID, JTI: cl.ID, Issuer: cl.Issuer, Subject: cl.Subject,
		Audience: strings.Join(cl.Audience, " "), Header: hdr, Status: status, At: time.Now()})
	if status/100 == 2 {
		r.okBy[Key(payload.SubID)]++
	}
	r.mu.Unlock()
	w.WriteHeader(status)
}

func checkSubID(s map[string]string) error {
	want := map[string][]string{"email": {"email"}, "iss_sub": {"iss", "sub"}, "opaque": {"id"}}
	fields, ok := want[s["format"]]
	if !ok {
		return fmt.Errorf("unsupported sub_id format %q", s["format"])
	}
	if len(s) != len(fields)+1 {
		return fmt.Errorf("sub_id %v has extra members", s)
	}
	for _, f := range fields {
		if s[f] == "" {
			return fmt.Errorf("sub_id %v lacks %s", s, f)
		}
	}
	return nil
}

func (r *Receiver) verify(raw string) (map[string]any, *jwt.Claims, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		return nil, nil, fmt.Errorf("bearer is not a JWS: %w", err)
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders["typ"].(string); typ != "global-token-revocation+jwt" {
		return nil, nil, fmt.Errorf("typ %q", typ)
	}
	keys, err := r.jwks()
	if err != nil {
		return nil, nil, err
	}
	found := keys.Key(h.KeyID)
	if len(found) == 0 {
		return nil, nil, fmt.Errorf("unknown kid %q", h.KeyID)
	}
	var cl jwt.Claims
	if err := tok.Claims(found[0].Key, &cl); err != nil {
		return nil, nil, fmt.Errorf("signature: %w", err)
	}
	if err := cl.ValidateWithLeeway(jwt.Expected{Issuer: r.issuer, AnyAudience: jwt.Audience{r.URL}, Time: time.Now()}, time.Minute); err != nil {
		return nil, nil, fmt.Errorf("claims: %w", err)
	}
	if cl.ID == "" || cl.Subject == "" || cl.IssuedAt == nil || cl.Expiry == nil {
		return nil, nil, errors.New("missing jti, sub, iat or exp")
	}
	if life := cl.Expiry.Time().Sub(cl.IssuedAt.Time()); life > 10*time.Minute {
		return nil, nil, fmt.Errorf("token lives %s", life)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jtis[cl.ID] {
		return nil, nil, fmt.Errorf("replayed jti %s", cl.ID)
	}
	r.jtis[cl.ID] = true
	hdr := map[string]any{"alg": h.Algorithm, "kid": h.KeyID}
	for k, v := range h.ExtraHeaders {
		hdr[string(k)] = v
	}
	return hdr, &cl, nil
}

func (r *Receiver) jwks() (*jose.JSONWebKeySet, error) {
	r.mu.Lock()
	if r.keys != nil {
		defer r.mu.Unlock()
		return r.keys, nil
	}
	r.mu.Unlock()
	resp, err := r.client.Get(r.jwksURL)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	r.mu.Lock()
	r.keys = &set
	r.mu.Unlock()
	return &set, nil
}

// SetJWKSURL sets where the sender's keys are fetched (before the first
// request).
func (r *Receiver) SetJWKSURL(u string) {
	r.mu.Lock()
	r.jwksURL = u
	r.keys = nil
	r.mu.Unlock()
}

// Release lets held requests (and all later ones) through.
func (r *Receiver) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.release:
	default:
		close(r.release)
	}
}
