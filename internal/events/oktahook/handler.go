package oktahook

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Config configures the hook handler.
type Config struct {
	// Header carries the secret; Secrets are the accepted values (the whole
	// header value, e.g. "Basic …" or a random string).
	Header  string
	Secrets []string
	// MaxBody bounds a delivery (Okta's are far below 1 MiB).
	MaxBody int64
	Mapping events.Mapping
	// Issuer is the Okta org URL; empty: taken from each delivery's source.
	Issuer         string
	PublishTimeout time.Duration
	Publisher      events.Publisher
	Recorder       audit.Recorder
	Now            func() time.Time
	Log            *slog.Logger
}

// Handler serves /hooks/okta.
type Handler struct {
	cfg     Config
	secrets [][]byte
}

// New validates cfg and returns the handler.
func New(cfg Config) (*Handler, error) {
	var errs []error
	if cfg.Header == "" {
		errs = append(errs, errors.New("oktahook: no auth header name"))
	}
	if cfg.MaxBody <= 0 || cfg.PublishTimeout <= 0 {
		errs = append(errs, errors.New("oktahook: body limit and publish timeout must be positive"))
	}
	if cfg.Mapping == nil || cfg.Publisher == nil || cfg.Recorder == nil || cfg.Now == nil || cfg.Log == nil {
		errs = append(errs, errors.New("oktahook: mapping, publisher, recorder, clock and logger are required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	h := &Handler{cfg: cfg}
	for _, s := range cfg.Secrets {
		if s != "" {
			h.secrets = append(h.secrets, []byte(s))
		}
	}
	if len(h.secrets) == 0 {
		cfg.Log.Warn("okta hook has no secret configured: every delivery will be refused (set okta.hook.secrets)")
	}
	return h, nil
}

// ServeHTTP handles the verification GET and delivery POSTs.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !h.authenticated(r) {
		h.record(ctx, audit.Record{Type: audit.TypeAuthFailed, Outcome: "rejected", Error: "missing or wrong hook secret",
			Detail: audit.Detail(map[string]any{"remote": events.RemoteHost(r), "method": r.Method, "header_present": r.Header.Get(h.cfg.Header) != ""})})
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	events.Authenticated(ctx)
	if r.Method == http.MethodGet {
		h.verify(w, r)
		return
	}
	h.deliver(w, r)
}

// authenticated compares the header against every secret in constant time,
// without stopping at the first match, so timing tells nothing about which
// secret (or how much of one) matched.
func (h *Handler) authenticated(r *http.Request) bool {
	got := []byte(r.Header.Get(h.cfg.Header))
	ok := 0
	for _, s := range h.secrets {
		ok |= subtle.ConstantTimeCompare(got, s)
	}
	return ok == 1 && len(got) > 0
}

func (h *Handler) verify(w http.ResponseWriter, r *http.Request) {
	challenge := r.Header.Get("X-Okta-Verification-Challenge")
	if challenge == "" {
		http.Error(w, "missing X-Okta-Verification-Challenge", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"verification": challenge})
}

func (h *Handler) deliver(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.reject(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", h.cfg.MaxBody))
			return
		}
		// The sender is authenticated; its body did not arrive (too slow,
		// connection cut). Okta retries a 5xx once and never a 4xx: the
		// events may well be real, so ask for them again.
		h.cfg.Log.WarnContext(ctx, "okta hook: body not received; answering 503 so that Okta retries", "err", err)
		http.Error(w, "body not received; retry", http.StatusServiceUnavailable)
		return
	}
	// JSON is UTF-8 (RFC 8259); a decoder would turn invalid bytes into
	// U+FFFD, and two different uuids into one event ID.
	if !utf8.Valid(body) {
		h.reject(w, r, http.StatusBadRequest, "body is not valid UTF-8")
		return
	}
	delivery, raws, err := parseDelivery(body)
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, err.Error())
		return
	}
	now := h.cfg.Now().UTC()
	issuer := h.cfg.Issuer
	if issuer == "" {
		issuer = originOf(delivery.Source)
	}
	var evs []events.Event
	var ignored []audit.Record
	if len(raws) == 0 {
		ignored = append(ignored, audit.Record{Type: audit.TypeEventIgnored, Outcome: "ignored",
			Detail: audit.Detail(map[string]any{"reason": "delivery has no events", "delivery": delivery.EventID})})
	}
	for i, raw := range raws {
		ev, reason, err := events.MapOktaLogEvent(raw, events.SourceOktaHook, issuer, now, h.cfg.Mapping)
		if err != nil {
			ignored = append(ignored, audit.Record{Type: audit.TypeEventRejected, Source: string(events.SourceOktaHook), Outcome: "rejected",
				Error: fmt.Sprintf("data.events[%d]: %v", i, err), Detail: audit.Detail(map[string]any{"delivery": delivery.EventID})})
			continue
		}
		if reason != "" {
			ignored = append(ignored, audit.Record{Type: audit.TypeEventIgnored, EventID: ev.ID, Source: string(events.SourceOktaHook),
				Subject: audit.SubjectOf(ev.Subject), Outcome: "ignored", OccurredAt: timePtr(ev.OccurredAt),
				Detail: audit.Detail(map[string]any{"reason": reason, "event_type": ev.Cause, "delivery": delivery.EventID})})
			continue
		}
		evs = append(evs, ev)
	}

	pubCtx, cancel := context.WithTimeout(ctx, h.cfg.PublishTimeout)
	defer cancel()
	pubs, err := h.cfg.Publisher.PublishEvents(pubCtx, evs)
	if err != nil {
		h.cfg.Log.ErrorContext(ctx, "okta hook: events not durable, answering 503", "delivery", delivery.EventID, "events", len(evs), "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	// The receipt of a new event is recorded by the planner, from the
	// durable event itself (exactly once); here only what the stream
	// refused as a copy, so that a repeated delivery is visible.
	recs := ignored
	for i, ev := range evs {
		if !pubs[i].Duplicate {
			continue
		}
		recs = append(recs, audit.DuplicateReceipt(ev, pubs[i].Sequence, map[string]any{"delivery": delivery.EventID}))
	}
	if err := h.recordAll(pubCtx, recs); err != nil {
		// The events are durable; only the note of a copy or an ignored
		// event is missing. A 503 makes Okta retry, which records it.
		h.cfg.Log.ErrorContext(ctx, "okta hook: audit not durable, answering 503", "delivery", delivery.EventID, "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	h.cfg.Log.DebugContext(ctx, "okta hook delivery", "delivery", delivery.EventID, "events", len(evs), "ignored", len(ignored))
	w.WriteHeader(http.StatusOK)
}

// envelope is an Event Hook delivery.
type envelope struct {
	EventType string `json:"eventType"`
	Source    string `json:"source"`
	EventID   string `json:"eventId"`
	Data      struct {
		Events []json.RawMessage `json:"events"`
	} `json:"data"`
}

// parseDelivery accepts an Event Hook envelope, and — liberal in what we
// accept — a bare LogEvent or an array of them, as tools replaying System
// Log exports send.
func parseDelivery(body []byte) (envelope, []json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	// json.Unmarshal checks the whole body is JSON before it decodes any
	// of it, and the events it keeps raw are then known to be JSON too.
	if len(body) > 0 && body[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(body, &arr); err != nil {
			return envelope{}, nil, notJSON(err, "body is not a list of events")
		}
		return envelope{}, arr, nil
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return envelope{}, nil, notJSON(err, "body is not an event hook delivery")
	}
	if env.Data.Events != nil {
		return env, env.Data.Events, nil
	}
	var probe struct {
		UUID      string `json:"uuid"`
		EventType string `json:"eventType"`
	}
	if json.Unmarshal(body, &probe) == nil && probe.UUID != "" && probe.EventType != "" && probe.EventType != "com.okta.event_hook" {
		return envelope{}, []json.RawMessage{body}, nil
	}
	return envelope{}, nil, errors.New("body has no data.events")
}

// notJSON names a body that is not JSON as such, and otherwise says what
// the JSON is not.
func notJSON(err error, what string) error {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return errors.New("body is not JSON")
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, status int, reason string) {
	h.record(r.Context(), audit.Record{Type: audit.TypeEventRejected, Source: string(events.SourceOktaHook), Outcome: "rejected",
		HTTPStatus: status, Error: reason, Detail: audit.Detail(map[string]any{"remote": events.RemoteHost(r)})})
	http.Error(w, reason, status)
}

// record writes records about a refused request; failing to record does not
// change the answer, which no retry could improve.
func (h *Handler) record(ctx context.Context, recs ...audit.Record) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.PublishTimeout)
	defer cancel()
	if err := h.recordAll(ctx, recs); err != nil {
		h.cfg.Log.ErrorContext(ctx, "okta hook: audit record lost", "type", recs[0].Type, "err", err)
	}
}

func (h *Handler) recordAll(ctx context.Context, recs []audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	now := h.cfg.Now().UTC()
	for i := range recs {
		// Each receipt is its own fact: a retried delivery is recorded again.
		recs[i].ID = "okta-hook/" + uuid.NewString()
		recs[i].Time = now
		if recs[i].Source == "" {
			recs[i].Source = string(events.SourceOktaHook)
		}
	}
	return h.cfg.Recorder.Record(ctx, recs...)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// originOf returns scheme://host of Okta's `source` URL, which is the org.
func originOf(source string) string {
	u, err := url.Parse(source)
	if err != nil || u.Scheme != "https" || u.Host == "" || strings.ContainsAny(u.Host, "{}") {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
