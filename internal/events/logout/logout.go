// Package logout makes lifecycle-worker an IdP's Universal Logout endpoint:
// a Global Token Revocation receiver (draft-parecki-oauth-global-token-
// revocation-06, as Okta Universal Logout and Auth0 send it). A request is
// a private-key JWT as Bearer, signed by a trusted issuer, and a body naming
// the subject; it becomes a lifecycle Event, durable before we answer 204,
// that the pipeline revokes at every MCP authorization server behind us.
package logout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/jwks"
)

// TokenType is the JWT typ of a Global Token Revocation request.
const TokenType = "global-token-revocation+jwt"

// Issuer is one IdP whose Universal Logout requests we take.
type Issuer struct {
	// Issuer is the JWTs' iss, exactly (Okta: the org or custom-domain URL).
	Issuer string
	Keys   *jwks.Set
	// Clients, when set, are the only callers (the JWT's sub: the app's
	// OIDC client_id or SAML appInstanceId at the IdP) we take.
	Clients []string
	// Kind is what a logout from this issuer means (default sessions_revoked).
	Kind  events.Kind
	Scope events.Scope
	// Untyped accepts a JWT whose typ is absent or "JWT" (older senders).
	Untyped bool
}

// Replays remembers which subject each (issuer, jti) was used for, across
// restarts and replicas, for longer than a request can live.
type Replays interface {
	// Claim stores subject under key unless key is taken, and returns the
	// subject stored first.
	Claim(ctx context.Context, key, subject string) (string, error)
}

// Config configures the receiver.
type Config struct {
	Issuers []Issuer
	// Audience: a request's aud must be one of these (the endpoint's public
	// URL, exactly).
	Audience []string
	// MaxLifetime refuses a JWT that is still valid longer than this
	// (default 1h; Okta's live 5 minutes); Replays must remember longer.
	MaxLifetime    time.Duration
	MaxBody        int64
	PublishTimeout time.Duration
	Publisher      events.Publisher
	Recorder       audit.Recorder
	Replays        Replays
	Now            func() time.Time
	Log            *slog.Logger
}

// Receiver serves the Global Token Revocation endpoint.
type Receiver struct {
	cfg     Config
	issuers map[string]*Issuer
}

// algorithms a request may be signed with: asymmetric only.
var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// skew is the clock difference tolerated on exp, nbf and iat.
const skew = time.Minute

// New validates cfg and returns the receiver.
func New(cfg Config) (*Receiver, error) {
	if cfg.Publisher == nil || cfg.Recorder == nil || cfg.Replays == nil || cfg.Now == nil || cfg.Log == nil {
		return nil, errors.New("logout: publisher, recorder, replay store, clock and logger are required")
	}
	if len(cfg.Audience) == 0 || cfg.MaxBody <= 0 || cfg.PublishTimeout <= 0 {
		return nil, errors.New("logout: audience, body limit and publish timeout are required")
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = time.Hour
	}
	r := &Receiver{cfg: cfg, issuers: map[string]*Issuer{}}
	for i := range cfg.Issuers {
		is := cfg.Issuers[i]
		if is.Issuer == "" || is.Keys == nil {
			return nil, errors.New("logout: every issuer needs its iss and keys")
		}
		if is.Kind == "" {
			is.Kind = events.KindSessionsRevoked
		}
		if !is.Kind.Valid() || is.Kind == events.KindReactivated {
			return nil, fmt.Errorf("logout: issuer %s: kind %q does not revoke", is.Issuer, is.Kind)
		}
		r.issuers[is.Issuer] = &is
	}
	return r, nil
}

// refusal is an answer other than 204, with what goes on record.
type refusal struct {
	status int
	reason string
}

func refuse(status int, format string, args ...any) *refusal {
	return &refusal{status: status, reason: fmt.Sprintf(format, args...)}
}

// claims are what we read from a request's JWT.
type claims struct {
	Iss string          `json:"iss"`
	Sub string          `json:"sub"`
	Aud json.RawMessage `json:"aud"`
	Jti string          `json:"jti"`
	Iat *float64        `json:"iat"`
	Nbf *float64        `json:"nbf"`
	Exp *float64        `json:"exp"`
}

// ServeHTTP takes one Universal Logout request.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		r.answer(w, req, refuse(http.StatusMethodNotAllowed, "Global Token Revocation takes POST"), nil)
		return
	}
	c, is, ref := r.authenticate(req)
	if ref != nil {
		r.answer(w, req, ref, c)
		return
	}
	events.Authenticated(req.Context())
	ev, ref := r.event(w, req, c, is)
	if ref != nil {
		r.answer(w, req, ref, c)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), r.cfg.PublishTimeout)
	defer cancel()
	pubs, err := r.cfg.Publisher.PublishEvents(ctx, []events.Event{ev})
	if err != nil {
		// Not durable: the IdP retries a 5xx (Okta does, once).
		r.cfg.Log.ErrorContext(req.Context(), "universal logout: event not durable, answering 503", "iss", audit.BoundString(c.Iss), "err", err)
		http.Error(w, "temporarily unavailable; retry", http.StatusServiceUnavailable)
		return
	}
	if pubs[0].Duplicate { // the IdP sent it again: on record, revoked once
		rec := audit.DuplicateReceipt(ev, pubs[0].Sequence, map[string]any{"jti": c.Jti, "client": c.Sub})
		if err := r.record(ctx, rec); err != nil {
			r.cfg.Log.ErrorContext(ctx, "universal logout: audit record lost", "err", err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// authenticate verifies the Bearer JWT: compact, an asymmetric signature by
// a key of a trusted issuer, typ, aud, exp, nbf, iat, jti, and the caller.
func (r *Receiver) authenticate(req *http.Request) (*claims, *Issuer, *refusal) {
	raw, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	raw = strings.TrimSpace(raw)
	if !ok || raw == "" {
		return nil, nil, refuse(http.StatusUnauthorized, "no Bearer token")
	}
	if strings.Count(raw, ".") != 2 || strings.HasPrefix(raw, "{") {
		return nil, nil, refuse(http.StatusUnauthorized, "the Bearer token is not a compact JWS")
	}
	tok, err := jose.ParseSigned(raw, algorithms)
	if err != nil || len(tok.Signatures) != 1 {
		return nil, nil, refuse(http.StatusUnauthorized, "not a JWT signed with an asymmetric algorithm")
	}
	h := tok.Signatures[0].Protected
	var unverified claims
	if err := json.Unmarshal(tok.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return nil, nil, refuse(http.StatusUnauthorized, "JWT claims are not a JSON object")
	}
	is, ok := r.issuers[unverified.Iss]
	if !ok {
		return &unverified, nil, refuse(http.StatusUnauthorized, "iss %q is not a trusted issuer", unverified.Iss)
	}
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	switch t := strings.TrimPrefix(strings.ToLower(typ), "application/"); {
	case t == TokenType:
	case (t == "" || t == "jwt") && is.Untyped:
	default:
		return &unverified, is, refuse(http.StatusUnauthorized, "typ %q is not %s", typ, TokenType)
	}
	keys, err := is.Keys.Find(req.Context(), h.KeyID)
	switch {
	case errors.Is(err, jwks.ErrUnknownKey):
		return &unverified, is, refuse(http.StatusUnauthorized, "kid %q is not among the issuer's keys", h.KeyID)
	case err != nil:
		r.cfg.Log.WarnContext(req.Context(), "universal logout: issuer keys unavailable", "iss", audit.BoundString(is.Issuer), "err", err)
		return &unverified, is, refuse(http.StatusServiceUnavailable, "the issuer's keys could not be fetched; retry later")
	}
	var payload []byte
	for _, k := range keys {
		if payload, err = tok.Verify(k.Key); err == nil {
			break
		}
	}
	if err != nil {
		return &unverified, is, refuse(http.StatusUnauthorized, "signature does not verify with the issuer's keys")
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return &unverified, is, refuse(http.StatusUnauthorized, "claims: %v", err)
	}
	now := r.cfg.Now()
	switch {
	case c.Jti == "":
		return &c, is, refuse(http.StatusUnauthorized, "no jti")
	case c.Exp == nil:
		return &c, is, refuse(http.StatusUnauthorized, "no exp")
	case events.UnixTime(*c.Exp).Before(now.Add(-skew)):
		return &c, is, refuse(http.StatusUnauthorized, "expired")
	case events.UnixTime(*c.Exp).After(now.Add(r.cfg.MaxLifetime)):
		return &c, is, refuse(http.StatusUnauthorized, "exp is more than %s away: not a revocation request's lifetime", r.cfg.MaxLifetime)
	case c.Nbf != nil && events.UnixTime(*c.Nbf).After(now.Add(skew)):
		return &c, is, refuse(http.StatusUnauthorized, "not valid yet (nbf)")
	case c.Iat != nil && events.UnixTime(*c.Iat).After(now.Add(skew)):
		return &c, is, refuse(http.StatusUnauthorized, "iat is in the future")
	}
	aud, err := events.Audiences(c.Aud)
	if err != nil || !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(r.cfg.Audience, a) }) {
		return &c, is, refuse(http.StatusUnauthorized, "aud %v is not this endpoint", aud)
	}
	if len(is.Clients) > 0 && !slices.Contains(is.Clients, c.Sub) {
		return &c, is, refuse(http.StatusForbidden, "caller %q may not log users out here", c.Sub)
	}
	return &c, is, nil
}

// event reads the subject and makes the lifecycle event, refusing a jti
// that was already used for another subject.
func (r *Receiver) event(w http.ResponseWriter, req *http.Request, c *claims, is *Issuer) (events.Event, *refusal) {
	if ct := req.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			return events.Event{}, refuse(http.StatusBadRequest, "Content-Type must be application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return events.Event{}, refuse(http.StatusRequestEntityTooLarge, "body larger than %d bytes", r.cfg.MaxBody)
		}
		return events.Event{}, refuse(http.StatusServiceUnavailable, "body not received; retry")
	}
	var b struct {
		SubID   json.RawMessage `json:"sub_id"`
		Subject json.RawMessage `json:"subject"` // drafts up to -02, and Okta's guide
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return events.Event{}, refuse(http.StatusBadRequest, "body is not a JSON object")
	}
	raw := b.SubID
	if len(raw) == 0 {
		raw = b.Subject
	}
	if len(raw) == 0 {
		return events.Event{}, refuse(http.StatusBadRequest, "no sub_id")
	}
	subject, why, err := events.ParseSubjectID(raw)
	switch {
	case err != nil:
		return events.Event{}, refuse(http.StatusBadRequest, "sub_id: %v", err)
	case why != "":
		return events.Event{}, refuse(http.StatusBadRequest, "sub_id: %s", why)
	}
	// One jti, one subject: a captured request cannot be replayed for
	// someone else; the IdP's retry of the same request goes through (and
	// the event store's dedup makes it revoke once).
	key := sha256.Sum256([]byte(c.Iss + "\x00" + c.Jti))
	canon, _ := json.Marshal(subject)
	want := sha256.Sum256(canon)
	ctx, cancel := context.WithTimeout(req.Context(), r.cfg.PublishTimeout)
	defer cancel()
	first, err := r.cfg.Replays.Claim(ctx, hex.EncodeToString(key[:]), hex.EncodeToString(want[:]))
	if err != nil {
		r.cfg.Log.ErrorContext(req.Context(), "universal logout: replay store unavailable, answering 503", "err", err)
		return events.Event{}, refuse(http.StatusServiceUnavailable, "temporarily unavailable; retry")
	}
	if first != hex.EncodeToString(want[:]) {
		return events.Event{}, refuse(http.StatusUnauthorized, "jti %q was already used for another subject", c.Jti)
	}
	now := r.cfg.Now().UTC()
	occurred := now
	if c.Iat != nil {
		occurred = events.UnixTime(*c.Iat)
	}
	cause := "Universal Logout from " + c.Iss
	if c.Sub != "" {
		cause += " (app " + c.Sub + ")"
	}
	evRaw, _ := json.Marshal(map[string]any{"iss": c.Iss, "sub": c.Sub, "jti": c.Jti, "iat": c.Iat, "sub_id": raw})
	return events.Event{ID: "gtr:" + c.Iss + ":" + c.Jti, Source: events.SourceLogout, Kind: is.Kind, Subject: subject, Scope: is.Scope,
		OccurredAt: occurred, ReceivedAt: now, Cause: cause, Raw: evRaw}, nil
}

// answer refuses a request with the draft's status and puts the refusal on
// record: auth.failed for 401/403, event.rejected otherwise. The body is
// informative only (Okta ignores it).
func (r *Receiver) answer(w http.ResponseWriter, req *http.Request, ref *refusal, c *claims) {
	detail := map[string]any{"remote": events.RemoteHost(req)}
	if c != nil {
		detail["iss"], detail["jti"], detail["client"] = c.Iss, c.Jti, c.Sub
	}
	typ := audit.TypeEventRejected
	if ref.status == http.StatusUnauthorized || ref.status == http.StatusForbidden {
		typ = audit.TypeAuthFailed
		w.Header().Set("WWW-Authenticate", `Bearer realm="global-token-revocation"`)
	}
	if ref.status != http.StatusServiceUnavailable {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), r.cfg.PublishTimeout)
		if err := r.record(ctx, audit.Record{Type: typ, Outcome: "rejected", HTTPStatus: ref.status, Error: ref.reason, Detail: audit.Detail(detail)}); err != nil {
			r.cfg.Log.ErrorContext(ctx, "universal logout: audit record lost", "type", typ, "err", err)
		}
		cancel()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ref.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": http.StatusText(ref.status), "error_description": ref.reason})
}

func (r *Receiver) record(ctx context.Context, recs ...audit.Record) error {
	now := r.cfg.Now().UTC()
	for i := range recs {
		recs[i].ID, recs[i].Time, recs[i].Source = "gtr/"+uuid.NewString(), now, string(events.SourceLogout)
	}
	return r.cfg.Recorder.Record(ctx, recs...)
}
