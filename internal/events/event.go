package events

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Source names the intake an Event came through.
type Source string

// Sources of events.
const (
	SourceOktaHook Source = "okta-hook"
	SourceOktaLog  Source = "okta-log"
	SourceSCIM     Source = "scim"
	SourceSSF      Source = "ssf"
	// SourceLogout is the Universal Logout (Global Token Revocation)
	// endpoint an IdP calls.
	SourceLogout Source = "universal-logout"
)

// Kind is what happened to the subject, independent of the IdP's vocabulary.
type Kind string

// Kinds of lifecycle change (docs/architecture.md, Lifecycle kinds).
const (
	KindDeprovisioned      Kind = "deprovisioned"
	KindSuspended          Kind = "suspended"
	KindSessionsRevoked    Kind = "sessions_revoked"
	KindCredentialsChanged Kind = "credentials_changed"
	KindAccessRemoved      Kind = "access_removed"
	KindRiskElevated       Kind = "risk_elevated"
	KindReactivated        Kind = "reactivated"
)

// Kinds lists every kind, in the order of the design table.
var Kinds = []Kind{
	KindDeprovisioned, KindSuspended, KindSessionsRevoked, KindCredentialsChanged,
	KindAccessRemoved, KindRiskElevated, KindReactivated,
}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	for _, known := range Kinds {
		if k == known {
			return true
		}
	}
	return false
}

// Revokes reports whether events of this kind lead to revocation. A
// reactivation is recorded for the audit trail only.
func (k Kind) Revokes() bool { return k != KindReactivated }

// Subject identifies the person an event is about, with every identifier the
// source gave. Drivers pick the one their target understands.
type Subject struct {
	Issuer     string `json:"issuer,omitempty"`      // the IdP's issuer, for iss_sub identifiers
	ID         string `json:"id,omitempty"`          // the IdP's user id (Okta 00u…)
	Login      string `json:"login,omitempty"`       // the IdP login / userName
	Email      string `json:"email,omitempty"`       // the primary email, when known
	SCIMID     string `json:"scim_id,omitempty"`     // our SCIM resource id
	ExternalID string `json:"external_id,omitempty"` // the SCIM client's externalId
}

// Empty reports whether the subject carries no identifier at all.
func (s Subject) Empty() bool {
	return s.ID == "" && s.Login == "" && s.Email == "" && s.SCIMID == "" && s.ExternalID == ""
}

// Scope narrows an event to some apps or groups. The zero Scope means "all
// targets": the subject lost everything.
type Scope struct {
	Apps   []ScopeRef `json:"apps,omitempty"`
	Groups []ScopeRef `json:"groups,omitempty"`
}

// ScopeRef names an app or group by the IdP's id and display name.
type ScopeRef struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// All reports whether the scope is unrestricted.
func (s Scope) All() bool { return len(s.Apps) == 0 && len(s.Groups) == 0 }

// Event is one lifecycle change, normalised. Its ID comes from the source so
// that duplicates (Okta's retry, the System Log backstop, an IdP retry) carry
// the same ID and are dropped by the LIFECYCLE stream's dedup window.
type Event struct {
	ID         string          `json:"id"`
	Source     Source          `json:"source"`
	Kind       Kind            `json:"kind"`
	Subject    Subject         `json:"subject"`
	Scope      Scope           `json:"scope"`
	OccurredAt time.Time       `json:"occurred_at"`
	ReceivedAt time.Time       `json:"received_at"`
	Cause      string          `json:"cause"`
	Raw        json.RawMessage `json:"raw,omitempty"`

	// rawValid says Raw was decoded as JSON already (MapOktaLogEvent
	// parsed it), so that Encode need not scan it again.
	rawValid bool
}

// Encode is the event as LIFECYCLE holds it: its JSON, with Raw written
// as it came rather than compacted again — it is the IdP's own text, and
// on the hook's path the largest part of the message. A Raw no decoder
// has read yet is checked first: the stream holds JSON only.
func (e Event) Encode() ([]byte, error) {
	raw := e.Raw
	e.Raw = nil
	b, err := json.Marshal(e)
	if err != nil || len(raw) == 0 {
		return b, err
	}
	if !e.rawValid && !json.Valid(raw) {
		return nil, fmt.Errorf("event %s: raw is not JSON", e.ID)
	}
	// b ends with the object's closing brace, and raw is last in it.
	out := make([]byte, 0, len(b)+len(`,"raw":`)+len(raw))
	out = append(out, b[:len(b)-1]...)
	out = append(out, `,"raw":`...)
	out = append(out, raw...)
	return append(out, '}'), nil
}

// Validate checks the invariants every publisher relies on.
func (e Event) Validate() error {
	switch {
	case e.ID == "":
		return fmt.Errorf("event has no id")
	case !e.Kind.Valid():
		return fmt.Errorf("event %s: unknown kind %q", e.ID, e.Kind)
	case e.Subject.Empty():
		return fmt.Errorf("event %s: subject has no identifier", e.ID)
	}
	return nil
}

// Topic is the LIFECYCLE subject the event is published on.
func (e Event) Topic() string { return "lifecycle." + string(e.Source) + "." + string(e.Kind) }

// Publication is the broker's answer to one publish.
type Publication struct {
	Duplicate bool   // the broker already held a message with this ID
	Sequence  uint64 // the stream sequence of the (original) message
}

// Publisher makes events durable. Publish returns only once every event is
// stored (or the first error); the results are in the order of evs.
type Publisher interface {
	PublishEvents(ctx context.Context, evs []Event) ([]Publication, error)
}

// RemoteHost is the address an intake request came from, without its port,
// for the record of a refusal.
func RemoteHost(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	return host
}

type authenticatedKey struct{}

// WithOnAuthenticated returns ctx carrying fn, which Authenticated calls:
// how an intake tells the server that a request proved who sent it (so that
// only an IdP's requests, not a stranger's, take priority over revocations).
func WithOnAuthenticated(ctx context.Context, fn func()) context.Context {
	return context.WithValue(ctx, authenticatedKey{}, fn)
}

// Authenticated marks the request of ctx as authenticated.
func Authenticated(ctx context.Context) {
	if fn, ok := ctx.Value(authenticatedKey{}).(func()); ok {
		fn()
	}
}
