package revoke

import (
	"fmt"
	"net/mail"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// SubjectID is an RFC 9493 subject identifier.
type SubjectID struct {
	Format string `json:"format"`
	Email  string `json:"email,omitempty"`
	Iss    string `json:"iss,omitempty"`
	Sub    string `json:"sub,omitempty"`
	ID     string `json:"id,omitempty"`
}

// ErrSubject means the event lacks the identifier a target needs; no retry
// can fix it.
type ErrSubject struct{ Format, Missing string }

func (e *ErrSubject) Error() string {
	return fmt.Sprintf("subject has no %s for format %s", e.Missing, e.Format)
}

// NewSubjectID builds the identifier of the given format from s. For the
// email format it falls back to the login when that is an email address
// (Okta logins usually are); usedLogin reports that fallback.
func NewSubjectID(format string, s events.Subject) (id SubjectID, usedLogin bool, err error) {
	switch format {
	case "email":
		if s.Email != "" {
			return SubjectID{Format: "email", Email: s.Email}, false, nil
		}
		if a, err := mail.ParseAddress(s.Login); err == nil && a.Address == s.Login {
			return SubjectID{Format: "email", Email: s.Login}, true, nil
		}
		return SubjectID{}, false, &ErrSubject{Format: format, Missing: "email"}
	case "iss_sub":
		if s.Issuer == "" {
			return SubjectID{}, false, &ErrSubject{Format: format, Missing: "issuer"}
		}
		if s.ID == "" {
			return SubjectID{}, false, &ErrSubject{Format: format, Missing: "id"}
		}
		return SubjectID{Format: "iss_sub", Iss: s.Issuer, Sub: s.ID}, false, nil
	case "opaque":
		if s.ID == "" {
			return SubjectID{}, false, &ErrSubject{Format: format, Missing: "id"}
		}
		return SubjectID{Format: "opaque", ID: s.ID}, false, nil
	}
	return SubjectID{}, false, fmt.Errorf("unknown subject format %q", format)
}
