package ssf

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/jwks"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Transmitter is one source of SETs we accept.
type Transmitter struct {
	Issuer   string
	JWKSURL  string // fetched lazily, refetched for an unknown kid
	JWKSFile string // or fixed keys
	Tokens   []string
	// Managed marks a stream this worker created at the transmitter (see
	// package stream): its delivery token comes from Config.Streams, and is
	// required.
	Managed bool
	// Confirms, when set, makes this transmitter a target's authorization
	// server confirming revocations (GTR draft -06 §5): its session-revoked
	// SETs end revocations awaiting confirmation at that target, and are
	// never lifecycle events themselves.
	Confirms string
}

// Config configures the receiver.
type Config struct {
	Transmitters []Transmitter
	// Audience: a SET's aud must contain one of these.
	Audience []string
	Mapping  events.Mapping
	// MaxAge refuses SETs whose iat is older (default 12h). It must stay
	// below the LIFECYCLE stream's 24 h dedup window: a captured SET
	// replayed after its ID left the window would revoke again.
	MaxAge         time.Duration
	MaxBody        int64
	PublishTimeout time.Duration
	Publisher      events.Publisher
	Recorder       audit.Recorder
	// Confirmations holds the revocations awaiting a confirmation (needed
	// when a transmitter Confirms a target).
	Confirmations revoke.ConfirmLog
	// Streams is the shared state of managed streams (needed when a
	// transmitter is Managed).
	Streams Streams
	// Client fetches transmitters' keys (HTTPS, no redirects, a timeout).
	Client *http.Client
	Now    func() time.Time
	Log    *slog.Logger
}

type transmitter struct {
	Transmitter
	keys   *jwks.Set
	tokens [][]byte
}

// Streams is what the receiver needs of the streams it manages: their
// current delivery tokens, and where verification and status SETs go.
type Streams interface {
	Tokens(ctx context.Context, iss string) [][]byte
	Verified(ctx context.Context, iss, state string) (bool, error)
	StatusChanged(ctx context.Context, iss, status, reason string) error
}

// Receiver serves POST /ssf/events.
type Receiver struct {
	cfg          Config
	transmitters map[string]*transmitter
}

// algorithms a SET may be signed with: asymmetric only (no "none", no
// shared secrets).
var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// New validates cfg and returns the receiver.
func New(cfg Config) (*Receiver, error) {
	if cfg.Mapping == nil || cfg.Publisher == nil || cfg.Recorder == nil || cfg.Now == nil || cfg.Log == nil || cfg.Client == nil {
		return nil, errors.New("ssf: mapping, publisher, recorder, client, clock and logger are required")
	}
	if cfg.MaxBody <= 0 || cfg.PublishTimeout <= 0 || len(cfg.Audience) == 0 {
		return nil, errors.New("ssf: body limit, publish timeout and audience are required")
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 12 * time.Hour
	}
	r := &Receiver{cfg: cfg, transmitters: map[string]*transmitter{}}
	for _, t := range cfg.Transmitters {
		tr := &transmitter{Transmitter: t}
		switch {
		case t.JWKSFile != "":
			raw, err := os.ReadFile(t.JWKSFile)
			if err != nil {
				return nil, fmt.Errorf("ssf transmitter %s: %w", t.Issuer, err)
			}
			if tr.keys, err = jwks.Static(raw); err != nil {
				return nil, fmt.Errorf("ssf transmitter %s: %w", t.Issuer, err)
			}
		case t.JWKSURL != "":
			tr.keys = jwks.Remote(t.JWKSURL, cfg.Client, cfg.Now, time.Minute)
		default:
			return nil, fmt.Errorf("ssf transmitter %s: no keys", t.Issuer)
		}
		for _, tok := range t.Tokens {
			tr.tokens = append(tr.tokens, []byte(tok))
		}
		if t.Managed && cfg.Streams == nil {
			return nil, fmt.Errorf("ssf transmitter %s has a managed stream, but no stream state", t.Issuer)
		}
		if t.Confirms != "" && cfg.Confirmations == nil {
			return nil, fmt.Errorf("ssf transmitter %s confirms target %s, but there is no confirmation log", t.Issuer, t.Confirms)
		}
		if _, dup := r.transmitters[t.Issuer]; dup {
			return nil, fmt.Errorf("ssf transmitter %s is listed twice", t.Issuer)
		}
		r.transmitters[t.Issuer] = tr
	}
	return r, nil
}

// setError is an RFC 8935 §2.3 error answer.
type setError struct {
	status int
	code   string // invalid_request, invalid_key, invalid_issuer, invalid_audience, authentication_failed, access_denied
	desc   string
}

func (e *setError) Error() string { return e.code + ": " + e.desc }

func refuse(status int, code, format string, args ...any) *setError {
	return &setError{status: status, code: code, desc: fmt.Sprintf(format, args...)}
}

// set is what we read from a verified SET.
type set struct {
	Iss    string                     `json:"iss"`
	Jti    string                     `json:"jti"`
	Iat    *float64                   `json:"iat"`
	Exp    *float64                   `json:"exp"`
	Aud    json.RawMessage            `json:"aud"`
	Txn    string                     `json:"txn"`
	Sub    string                     `json:"sub"`
	SubID  json.RawMessage            `json:"sub_id"`
	Events map[string]json.RawMessage `json:"events"`
}

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		r.answer(w, req, refuse(http.StatusMethodNotAllowed, "invalid_request", "SETs are delivered by POST"), nil)
		return
	}
	if mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); mt != "application/secevent+jwt" {
		r.answer(w, req, refuse(http.StatusBadRequest, "invalid_request", "Content-Type must be application/secevent+jwt"), nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			r.answer(w, req, refuse(http.StatusRequestEntityTooLarge, "invalid_request", "SET larger than %d bytes", r.cfg.MaxBody), nil)
			return
		}
		r.answer(w, req, refuse(http.StatusBadRequest, "invalid_request", "reading body: %v", err), nil)
		return
	}
	authorized := func(tr *transmitter) bool {
		if tr.Managed { // the token we gave the transmitter is required
			return tokenOK(req, append(slices.Clone(tr.tokens), r.cfg.Streams.Tokens(req.Context(), tr.Issuer)...))
		}
		return len(tr.tokens) == 0 || tokenOK(req, tr.tokens)
	}
	s, serr, err := r.ingest(req.Context(), strings.TrimSpace(string(body)), authorized)
	switch {
	case serr != nil:
		r.answer(w, req, serr, s)
	case err != nil:
		// Not durable: the transmitter retries on a 5xx (RFC 8935 §2.3).
		r.cfg.Log.ErrorContext(req.Context(), "ssf: SET not durable, answering 503", "iss", s.Iss, "jti", s.Jti, "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// ingest verifies one SET and makes its events, and the records of what
// was not acted on, durable. A *setError is a refusal, for the caller to
// tell the transmitter and put on record; an error means nothing may be
// acknowledged: the SET must come again.
func (r *Receiver) ingest(ctx context.Context, raw string, authorized func(*transmitter) bool) (*set, *setError, error) {
	s, payload, serr := r.verify(ctx, raw, authorized)
	if serr != nil {
		return s, serr, nil
	}
	events.Authenticated(ctx)
	if tr := r.transmitters[s.Iss]; tr.Confirms != "" {
		recs, serr, err := r.confirm(ctx, s, tr.Confirms)
		if serr != nil || err != nil {
			return s, serr, err
		}
		return s, nil, r.record(ctx, recs...)
	}
	evs, ignored, serr := r.events(ctx, s, payload)
	if serr != nil {
		return s, serr, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	pubs, err := r.cfg.Publisher.PublishEvents(ctx, evs)
	if err != nil {
		return s, nil, fmt.Errorf("events not durable: %w", err)
	}
	recs := ignored
	for i, ev := range evs {
		if pubs[i].Duplicate { // a retransmission: on record, revoked once
			recs = append(recs, audit.DuplicateReceipt(ev, pubs[i].Sequence, map[string]any{"jti": s.Jti}))
		}
	}
	if err := r.record(ctx, recs...); err != nil {
		return s, nil, fmt.Errorf("audit not durable: %w", err)
	}
	return s, nil, nil
}

// verify authenticates the delivery and the SET and checks its claims. It
// returns what it could read even on failure, for the record.
func (r *Receiver) verify(ctx context.Context, raw string, authorized func(*transmitter) bool) (*set, []byte, *setError) {
	// RFC 8417 §2.2 / RFC 8935: a SET is a compact JWS, nothing else.
	if strings.Count(raw, ".") != 2 || strings.HasPrefix(raw, "{") {
		return nil, nil, refuse(http.StatusBadRequest, "invalid_request", "a SET must be a compact JWS (header.payload.signature)")
	}
	tok, err := jose.ParseSigned(raw, algorithms)
	if err != nil {
		return nil, nil, refuse(http.StatusBadRequest, "invalid_request", "not a signed JWT (or an algorithm we do not accept): %v", err)
	}
	if len(tok.Signatures) != 1 {
		return nil, nil, refuse(http.StatusBadRequest, "invalid_request", "a SET has exactly one signature")
	}
	h := tok.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); strings.TrimPrefix(strings.ToLower(typ), "application/") != "secevent+jwt" {
		return nil, nil, refuse(http.StatusBadRequest, "invalid_request", "typ %q is not secevent+jwt", typ)
	}
	var unverified set
	if err := json.Unmarshal(tok.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return nil, nil, refuse(http.StatusBadRequest, "invalid_request", "claims are not a JSON object: %v", err)
	}
	tr, ok := r.transmitters[unverified.Iss]
	if !ok {
		return &unverified, nil, refuse(http.StatusBadRequest, "invalid_issuer", "iss %q is not a configured transmitter", unverified.Iss)
	}
	if authorized != nil && !authorized(tr) {
		return &unverified, nil, refuse(http.StatusUnauthorized, "authentication_failed", "missing or wrong bearer token for this transmitter")
	}
	keys, err := tr.keys.Find(ctx, h.KeyID)
	if err != nil {
		if errors.Is(err, jwks.ErrUnknownKey) {
			return &unverified, nil, refuse(http.StatusBadRequest, "invalid_key", "kid %q is not among the transmitter's keys", h.KeyID)
		}
		r.cfg.Log.WarnContext(ctx, "ssf: transmitter keys unavailable", "iss", audit.BoundString(tr.Issuer), "err", err)
		return &unverified, nil, refuse(http.StatusServiceUnavailable, "invalid_key", "the transmitter's keys could not be fetched; retry later")
	}
	var payload []byte
	for _, k := range keys {
		if payload, err = tok.Verify(k.Key); err == nil {
			break
		}
	}
	if err != nil {
		return &unverified, nil, refuse(http.StatusBadRequest, "authentication_failed", "signature does not verify with the transmitter's keys")
	}
	var s set
	if err := json.Unmarshal(payload, &s); err != nil {
		return &unverified, nil, refuse(http.StatusBadRequest, "invalid_request", "claims: %v", err)
	}
	now := r.cfg.Now()
	switch {
	case s.Jti == "":
		return &s, nil, refuse(http.StatusBadRequest, "invalid_request", "no jti")
	case s.Iat == nil:
		return &s, nil, refuse(http.StatusBadRequest, "invalid_request", "no iat")
	case events.UnixTime(*s.Iat).After(now.Add(5 * time.Minute)):
		return &s, nil, refuse(http.StatusBadRequest, "invalid_request", "iat is in the future")
	case events.UnixTime(*s.Iat).Before(now.Add(-r.cfg.MaxAge)):
		return &s, nil, refuse(http.StatusBadRequest, "invalid_request", "iat is more than %s ago: too old to tell from a replay", r.cfg.MaxAge)
	case s.Exp != nil && events.UnixTime(*s.Exp).Before(now.Add(-time.Minute)):
		return &s, nil, refuse(http.StatusBadRequest, "invalid_request", "expired")
	case len(s.Events) == 0:
		return &s, nil, refuse(http.StatusBadRequest, "invalid_request", "no events")
	}
	aud, err := events.Audiences(s.Aud)
	if err != nil {
		return &s, nil, refuse(http.StatusBadRequest, "invalid_request", "aud: %v", err)
	}
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(r.cfg.Audience, a) }) {
		return &s, nil, refuse(http.StatusBadRequest, "invalid_audience", "aud %v is not this receiver", aud)
	}
	return &s, payload, nil
}

func tokenOK(req *http.Request, tokens [][]byte) bool {
	got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	match := 0
	for _, t := range tokens {
		match |= subtle.ConstantTimeCompare([]byte(got), t)
	}
	return match == 1
}

// events turns the SET's events into lifecycle events; those we do not act
// on become event.ignored records.
func (r *Receiver) events(ctx context.Context, s *set, payload []byte) ([]events.Event, []audit.Record, *setError) {
	uris := make([]string, 0, len(s.Events))
	for uri := range s.Events {
		uris = append(uris, uri)
	}
	sort.Strings(uris)
	now := r.cfg.Now().UTC()
	var evs []events.Event
	var ignored []audit.Record
	for _, uri := range uris {
		var body struct {
			Subject         json.RawMessage `json:"subject"` // legacy CAEP/RISC placement
			EventTimestamp  *float64        `json:"event_timestamp"`
			ChangeDirection string          `json:"change_direction"`
			State           string          `json:"state"`
			Status          string          `json:"status"`
			Reason          string          `json:"reason"`
		}
		if err := json.Unmarshal(s.Events[uri], &body); err != nil {
			return nil, nil, refuse(http.StatusBadRequest, "invalid_request", "events[%s] is not an object", uri)
		}
		id := "ssf:" + s.Iss + ":" + s.Jti
		if len(uris) > 1 {
			id += "#" + uri
		}
		ignore := func(reason string, subject *audit.Subject) {
			ignored = append(ignored, audit.Record{Type: audit.TypeEventIgnored, EventID: id, Subject: subject, Outcome: "ignored",
				Detail: audit.Detail(map[string]any{"reason": reason, "event_type": uri, "jti": s.Jti, "iss": s.Iss})})
		}
		managed := r.transmitters[s.Iss].Managed
		switch uri {
		case TypeVerification:
			reason := "stream verification (state " + body.State + ")"
			if managed {
				ok, err := r.cfg.Streams.Verified(ctx, s.Iss, body.State)
				switch {
				case err != nil:
					r.cfg.Log.WarnContext(ctx, "ssf: verification not recorded", "iss", audit.BoundString(s.Iss), "err", err)
				case ok:
					reason = "stream verification: the state we asked for"
				default:
					reason = "stream verification with a state we did not ask for (" + body.State + ")"
				}
			}
			ignore(reason, nil)
			continue
		case TypeStreamUpdated:
			r.cfg.Log.Warn("ssf: transmitter changed the stream's status", "iss", audit.BoundString(s.Iss), "status", audit.BoundString(body.Status))
			if managed {
				if err := r.cfg.Streams.StatusChanged(ctx, s.Iss, body.Status, body.Reason); err != nil {
					r.cfg.Log.WarnContext(ctx, "ssf: stream status not recorded", "iss", audit.BoundString(s.Iss), "err", err)
				}
			}
			ignore("stream status is now "+body.Status, nil)
			continue
		}
		subRaw := s.SubID
		if len(subRaw) == 0 {
			subRaw = body.Subject
		}
		var subject events.Subject
		var why string
		switch {
		case len(subRaw) > 0:
			var err error
			if subject, why, err = events.ParseSubjectID(subRaw); err != nil {
				return nil, nil, refuse(http.StatusBadRequest, "invalid_request", "sub_id: %v", err)
			}
		case s.Sub != "":
			subject = events.Subject{Issuer: s.Iss, ID: s.Sub}
		default:
			return nil, nil, refuse(http.StatusBadRequest, "invalid_request", "no sub_id")
		}
		kind, mapped := r.cfg.Mapping[uri]
		switch {
		case !mapped:
			ignore("event type not mapped to a lifecycle kind", audit.SubjectOf(subject))
			continue
		case why != "":
			ignore(why, nil)
			continue
		case uri == TypeAssuranceLevelChange && body.ChangeDirection != "decrease":
			ignore("assurance level did not decrease", audit.SubjectOf(subject))
			continue
		}
		occurred := events.UnixTime(*s.Iat)
		if body.EventTimestamp != nil {
			occurred = events.UnixTime(*body.EventTimestamp)
		}
		evs = append(evs, events.Event{ID: id, Source: events.SourceSSF, Kind: kind, Subject: subject,
			OccurredAt: occurred, ReceivedAt: now, Cause: uri, Raw: payload})
	}
	return evs, ignored, nil
}

// confirm turns an authorization server's session-revoked SETs into
// revocation.confirmed records for the revocations at target awaiting one;
// what matches none (or comes after the window) is on record as ignored.
// Record IDs come from the SET, so a retransmission is dropped by the
// stream's dedup rather than recorded as a stray.
func (r *Receiver) confirm(ctx context.Context, s *set, target string) ([]audit.Record, *setError, error) {
	var recs []audit.Record
	uris := make([]string, 0, len(s.Events))
	for uri := range s.Events {
		uris = append(uris, uri)
	}
	sort.Strings(uris)
	now := r.cfg.Now().UTC()
	for _, uri := range uris {
		id := "ssf-confirm/" + s.Iss + "/" + s.Jti + "#" + uri
		detail := map[string]any{"event_type": uri, "jti": s.Jti, "iss": s.Iss, "target": target}
		eventID := ""
		ignore := func(reason string, subject *audit.Subject) {
			detail["reason"] = reason
			recs = append(recs, audit.Record{ID: id, Type: audit.TypeEventIgnored, EventID: eventID, Target: target, Subject: subject, Outcome: "ignored", Detail: audit.Detail(detail)})
		}
		if uri != TypeSessionRevoked {
			ignore("a confirming authorization server's SET that is not session-revoked", nil)
			continue
		}
		var body struct {
			Subject json.RawMessage `json:"subject"`
		}
		_ = json.Unmarshal(s.Events[uri], &body)
		raw := s.SubID
		if len(raw) == 0 {
			raw = body.Subject
		}
		subject, why, err := events.ParseSubjectID(raw)
		switch {
		case err != nil:
			return nil, refuse(http.StatusBadRequest, "invalid_request", "sub_id: %v", err), nil
		case why != "":
			ignore(why, nil)
			continue
		}
		a, err := r.cfg.Confirmations.Take(ctx, target, subject)
		if err != nil {
			return nil, nil, fmt.Errorf("confirmations: %w", err)
		}
		switch {
		case a == nil:
			ignore("confirms no revocation at "+target+" awaiting one", audit.SubjectOf(subject))
		case now.After(a.Deadline):
			eventID, detail["deadline"] = a.EventID, a.Deadline
			ignore("came after the confirmation window", audit.SubjectOf(a.Subject))
		default:
			detail["accepted_at"], detail["confirmation_delay_ms"] = a.Accepted, now.Sub(a.Accepted).Milliseconds()
			if s.Iat != nil {
				detail["set_iat"] = events.UnixTime(*s.Iat)
			}
			recs = append(recs, audit.Record{ID: id, Type: audit.TypeRevocationConfirmed, EventID: a.EventID, Source: a.Source, Kind: a.Kind,
				Subject: audit.SubjectOf(a.Subject), Target: target, Outcome: "confirmed", Detail: audit.Detail(detail)})
		}
	}
	return recs, nil, nil
}

// answer refuses a delivery in RFC 8935 form and puts the refusal on record.
func (r *Receiver) answer(w http.ResponseWriter, req *http.Request, e *setError, s *set) {
	r.refused(req.Context(), e, s, map[string]any{"delivery": "push", "remote": events.RemoteHost(req)})
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ssf"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"err": e.code, "description": e.desc})
}

// refused puts a refused SET on record: auth.failed for a delivery without
// the stream's token, event.rejected otherwise.
func (r *Receiver) refused(ctx context.Context, e *setError, s *set, detail map[string]any) {
	detail["err"] = e.code
	if s != nil {
		detail["iss"], detail["jti"] = s.Iss, s.Jti
	}
	typ := audit.TypeEventRejected
	if e.status == http.StatusUnauthorized {
		typ = audit.TypeAuthFailed
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	if err := r.record(ctx, audit.Record{Type: typ, Outcome: "rejected", HTTPStatus: e.status, Error: e.desc, Detail: audit.Detail(detail)}); err != nil {
		r.cfg.Log.ErrorContext(ctx, "ssf: audit record lost", "type", typ, "err", err)
	}
}

func (r *Receiver) record(ctx context.Context, recs ...audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	now := r.cfg.Now().UTC()
	for i := range recs {
		if recs[i].ID != "" {
			recs[i].Time, recs[i].Source = now, cmp.Or(recs[i].Source, string(events.SourceSSF))
			continue
		}
		recs[i].ID = "ssf/" + uuid.NewString()
		recs[i].Time = now
		recs[i].Source = string(events.SourceSSF)
	}
	return r.cfg.Recorder.Record(ctx, recs...)
}
