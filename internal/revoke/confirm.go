package revoke

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Awaiting is a revocation whose target promised a signed confirmation
// (GTR draft -06 §5: the authorization server sends a CAEP session-revoked
// SET when it has finished): the 2xx said "accepted", the SET will say
// "done".
type Awaiting struct {
	EventID  string         `json:"event_id"`
	RecordID string         `json:"record_id"` // the job generation's record ID
	Target   string         `json:"target"`
	Source   string         `json:"source,omitempty"`
	Kind     string         `json:"kind,omitempty"`
	Subject  events.Subject `json:"subject"`
	Accepted time.Time      `json:"accepted"`
	Deadline time.Time      `json:"deadline"`
}

// ConfirmLog keeps the revocations awaiting a confirmation, findable by
// target and any identifier of the subject.
type ConfirmLog interface {
	Expect(ctx context.Context, a Awaiting) error
	// Take returns (and forgets) the revocation at target awaiting a
	// confirmation for subject, or nil.
	Take(ctx context.Context, target string, subject events.Subject) (*Awaiting, error)
}

// ConfirmKeys are the KV-safe keys of subject's identifiers at target.
func ConfirmKeys(target string, s events.Subject) []string {
	var ids []string
	if s.Email != "" {
		ids = append(ids, "email:"+strings.ToLower(s.Email))
	}
	if s.Issuer != "" && s.ID != "" {
		ids = append(ids, "iss_sub:"+s.Issuer+"\x00"+s.ID)
	}
	if s.ID != "" {
		ids = append(ids, "id:"+s.ID)
	}
	if s.Login != "" {
		ids = append(ids, "login:"+strings.ToLower(s.Login))
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		sum := sha256.Sum256([]byte(target + "\x00" + id))
		keys[i] = target + "." + hex.EncodeToString(sum[:16])
	}
	return keys
}
