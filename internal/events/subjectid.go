package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrSubjectID marks a subject identifier we cannot read at all (400);
// a readable one that names nobody we can act on is ignored instead.
var ErrSubjectID = errors.New("malformed subject identifier")

// ParseSubjectID reads an RFC 9493 / SSF subject identifier. It returns an empty
// Subject (and why) when the identifier is well-formed but names no person
// by anything a target understands, e.g. a session-only complex subject.
func ParseSubjectID(raw json.RawMessage) (Subject, string, error) {
	var id map[string]json.RawMessage
	if err := json.Unmarshal(raw, &id); err != nil || id == nil {
		return Subject{}, "", fmt.Errorf("%w: not an object", ErrSubjectID)
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
	var s Subject
	switch format {
	case "email":
		s.Email = str("email")
	case "iss_sub":
		s.Issuer, s.ID = str("iss"), str("sub")
		if s.Issuer == "" || s.ID == "" {
			return Subject{}, "", fmt.Errorf("%w: iss_sub needs iss and sub", ErrSubjectID)
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
			return Subject{}, "complex subject without a user member", nil
		}
		return ParseSubjectID(user)
	case "aliases":
		var ids []json.RawMessage
		if err := json.Unmarshal(id["identifiers"], &ids); err != nil {
			return Subject{}, "", fmt.Errorf("%w: aliases without identifiers", ErrSubjectID)
		}
		for _, one := range ids {
			a, _, err := ParseSubjectID(one)
			if err != nil {
				return Subject{}, "", err
			}
			s = merge(s, a)
		}
	case "":
		return Subject{}, "", fmt.Errorf("%w: no format", ErrSubjectID)
	default:
		return Subject{}, fmt.Sprintf("subject format %q names no one a target can revoke", format), nil
	}
	if s.Empty() {
		return Subject{}, "", fmt.Errorf("%w: %s identifier without a value", ErrSubjectID, format)
	}
	return s, "", nil
}

func merge(a, b Subject) Subject {
	pick := func(x, y string) string {
		if x != "" {
			return x
		}
		return y
	}
	return Subject{Issuer: pick(a.Issuer, b.Issuer), ID: pick(a.ID, b.ID), Login: pick(a.Login, b.Login),
		Email: pick(a.Email, b.Email), SCIMID: pick(a.SCIMID, b.SCIMID), ExternalID: pick(a.ExternalID, b.ExternalID)}
}
