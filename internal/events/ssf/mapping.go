package ssf

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Event type URIs (CAEP 1.0, RISC 1.0, SSF 1.0).
const (
	caep = "https://schemas.openid.net/secevent/caep/event-type/"
	risc = "https://schemas.openid.net/secevent/risc/event-type/"

	TypeSessionRevoked       = caep + "session-revoked"
	TypeCredentialChange     = caep + "credential-change"
	TypeAssuranceLevelChange = caep + "assurance-level-change"
	TypeAccountDisabled      = risc + "account-disabled"
	TypeAccountPurged        = risc + "account-purged"
	TypeAccountEnabled       = risc + "account-enabled"
	TypeCredentialChangeReq  = risc + "account-credential-change-required"
	TypeCredentialCompromise = risc + "credential-compromise"
	TypeRISCSessionsRevoked  = risc + "sessions-revoked" // deprecated by CAEP session-revoked; still sent
	TypeVerification         = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	TypeStreamUpdated        = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
)

// DefaultMapping is DESIGN §5's SSF column. assurance-level-change counts
// only when the level went down; the receiver decides that.
func DefaultMapping() events.Mapping {
	return events.Mapping{
		TypeAccountDisabled:      events.KindDeprovisioned,
		TypeAccountPurged:        events.KindDeprovisioned,
		TypeSessionRevoked:       events.KindSessionsRevoked,
		TypeRISCSessionsRevoked:  events.KindSessionsRevoked,
		TypeCredentialChange:     events.KindCredentialsChanged,
		TypeCredentialChangeReq:  events.KindCredentialsChanged,
		TypeCredentialCompromise: events.KindCredentialsChanged,
		TypeAssuranceLevelChange: events.KindRiskElevated,
		TypeAccountEnabled:       events.KindReactivated,
	}
}

// errSubject marks a subject identifier we cannot read at all (400);
// a readable one that names nobody we can act on is ignored instead.
var errSubject = errors.New("malformed subject identifier")

// subjectOf reads an RFC 9493 / SSF subject identifier. It returns an empty
// Subject (and why) when the identifier is well-formed but names no person
// by anything a target understands, e.g. a session-only complex subject.
func subjectOf(raw json.RawMessage) (events.Subject, string, error) {
	var id map[string]json.RawMessage
	if err := json.Unmarshal(raw, &id); err != nil || id == nil {
		return events.Subject{}, "", fmt.Errorf("%w: not an object", errSubject)
	}
	str := func(k string) string {
		var s string
		_ = json.Unmarshal(id[k], &s)
		return strings.TrimSpace(s)
	}
	format := str("format")
	if format == "" {
		format = str("subject_type") // RISC's older name, still sent by some transmitters
	}
	var s events.Subject
	switch format {
	case "email":
		s.Email = str("email")
	case "iss_sub":
		s.Issuer, s.ID = str("iss"), str("sub")
		if s.Issuer == "" || s.ID == "" {
			return events.Subject{}, "", fmt.Errorf("%w: iss_sub needs iss and sub", errSubject)
		}
	case "opaque":
		s.ID = str("id")
	case "account":
		s.Login = strings.TrimPrefix(str("uri"), "acct:")
	case "phone_number", "phone":
		s.Login = str("phone_number")
	case "complex":
		user, ok := id["user"]
		if !ok {
			return events.Subject{}, "complex subject without a user member", nil
		}
		return subjectOf(user)
	case "aliases":
		var ids []json.RawMessage
		if err := json.Unmarshal(id["identifiers"], &ids); err != nil {
			return events.Subject{}, "", fmt.Errorf("%w: aliases without identifiers", errSubject)
		}
		for _, one := range ids {
			a, _, err := subjectOf(one)
			if err != nil {
				return events.Subject{}, "", err
			}
			s = merge(s, a)
		}
	case "":
		return events.Subject{}, "", fmt.Errorf("%w: no format", errSubject)
	default:
		return events.Subject{}, fmt.Sprintf("subject format %q names no one a target can revoke", format), nil
	}
	if s.Empty() {
		return events.Subject{}, "", fmt.Errorf("%w: %s identifier without a value", errSubject, format)
	}
	return s, "", nil
}

func merge(a, b events.Subject) events.Subject {
	pick := func(x, y string) string {
		if x != "" {
			return x
		}
		return y
	}
	return events.Subject{Issuer: pick(a.Issuer, b.Issuer), ID: pick(a.ID, b.ID), Login: pick(a.Login, b.Login),
		Email: pick(a.Email, b.Email), SCIMID: pick(a.SCIMID, b.SCIMID), ExternalID: pick(a.ExternalID, b.ExternalID)}
}
