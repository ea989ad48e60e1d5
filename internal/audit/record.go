package audit

import (
	"context"
	"encoding/json"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Type is what a record says happened.
type Type string

// Record types (docs/architecture.md, Audit record types).
const (
	TypeEventReceived           Type = "event.received"
	TypeEventIgnored            Type = "event.ignored"
	TypeEventRejected           Type = "event.rejected"
	TypeAuthFailed              Type = "auth.failed"
	TypeRevocationPlanned       Type = "revocation.planned"
	TypeRevocationAttempted     Type = "revocation.attempted"
	TypeRevocationSucceeded     Type = "revocation.succeeded"
	TypeRevocationNotApplicable Type = "revocation.not_applicable"
	TypeRevocationFailed        Type = "revocation.failed"
	TypeRevocationDeadLettered  Type = "revocation.dead_lettered"
	TypeRevocationReplayed      Type = "revocation.replayed"
	// TypeRevocationConfirmed: the target's authorization server said, in a
	// SET it signed, that it finished a revocation we made.
	TypeRevocationConfirmed Type = "revocation.confirmed"
	// TypeStream: a Shared Signals stream we manage changed (created,
	// updated, verified, verification overdue, its status).
	TypeStream     Type = "ssf.stream"
	TypeCheckpoint Type = "checkpoint"
	TypeDLQListed  Type = "dlq.listed" // who looked at the dead letters
	// TypeConsoleSignIn: someone signed in to the console (how, as whom,
	// with which role).
	TypeConsoleSignIn Type = "console.signed_in"
)

// Types are every record type, in the order of a story.
var Types = []Type{TypeEventReceived, TypeEventIgnored, TypeEventRejected, TypeAuthFailed, TypeRevocationPlanned,
	TypeRevocationAttempted, TypeRevocationSucceeded, TypeRevocationNotApplicable, TypeRevocationFailed,
	TypeRevocationDeadLettered, TypeRevocationReplayed, TypeRevocationConfirmed, TypeCheckpoint, TypeDLQListed, TypeStream, TypeConsoleSignIn}

// Subject is who a record is about. Only identifiers, never credentials.
type Subject struct {
	Issuer string `json:"issuer,omitempty"`
	ID     string `json:"id,omitempty"`
	Login  string `json:"login,omitempty"`
	Email  string `json:"email,omitempty"`
}

// Record is one entry of the audit trail. Its JSON form is what the hash
// chain covers, so fields are only ever added, never renamed.
type Record struct {
	ID         string          `json:"id"`
	Seq        uint64          `json:"seq,omitempty"`
	Time       time.Time       `json:"time"`
	Type       Type            `json:"type"`
	EventID    string          `json:"event_id,omitempty"`
	Source     string          `json:"source,omitempty"`
	Kind       string          `json:"kind,omitempty"`
	Subject    *Subject        `json:"subject,omitempty"`
	Target     string          `json:"target,omitempty"`
	Driver     string          `json:"driver,omitempty"`
	Attempt    int             `json:"attempt,omitempty"`
	Outcome    string          `json:"outcome,omitempty"`
	HTTPStatus int             `json:"http_status,omitempty"`
	LatencyMS  int64           `json:"latency_ms,omitempty"`
	Error      string          `json:"error,omitempty"`
	OccurredAt *time.Time      `json:"occurred_at,omitempty"`
	Detail     json.RawMessage `json:"detail,omitempty"`
}

// Topic is the AUDIT subject a record is published on.
func (r Record) Topic() string { return "audit." + string(r.Type) }

// Recorder appends records to the audit trail. It returns once they are
// durable; record IDs make a repeated call harmless.
type Recorder interface {
	Record(ctx context.Context, recs ...Record) error
}

// Detail encodes v as a record's detail, dropping it when it cannot be
// encoded (details are informative; the record itself must not be lost).
// The bytes are json.Marshal's; a map of strings, integers, booleans,
// times and string lists — the details the pipeline writes per
// revocation — takes a short path (appendFlat).
func Detail(v any) json.RawMessage {
	if m, ok := v.(map[string]any); ok {
		if b, ok := appendFlat(make([]byte, 0, 64*len(m)+2), m); ok {
			return b
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// OutcomeDuplicate marks the receipt of an event the stream already held.
const OutcomeDuplicate = "duplicate"

// DuplicateReceipt records an event delivered again that the LIFECYCLE
// stream already held (at seq): the repeat is visible in the trail and
// revokes nothing twice. detail says how it came (delivery, jti, …).
func DuplicateReceipt(ev events.Event, seq uint64, detail map[string]any) Record {
	r := Record{Type: TypeEventReceived, EventID: ev.ID, Source: string(ev.Source), Kind: string(ev.Kind),
		Subject: SubjectOf(ev.Subject), Outcome: OutcomeDuplicate}
	if !ev.OccurredAt.IsZero() {
		occurred := ev.OccurredAt
		r.OccurredAt = &occurred
	}
	detail["event_type"], detail["lifecycle_seq"] = ev.Cause, seq
	r.Detail = Detail(detail)
	return r
}

// SubjectOf converts an event's subject to the audit form (nil when empty).
func SubjectOf(s events.Subject) *Subject {
	if s.Empty() {
		return nil
	}
	return &Subject{Issuer: s.Issuer, ID: s.ID, Login: s.Login, Email: s.Email}
}
