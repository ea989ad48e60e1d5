package ssf

import (
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

// DefaultMapping is the SSF column of docs/architecture.md (Lifecycle kinds). assurance-level-change counts
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
