package events

import (
	"fmt"
	"maps"
	"sort"
)

// Mapping maps an IdP's event type to a Kind. It is a plain table so that
// operators can override it in config without code.
type Mapping map[string]Kind

// DefaultOktaMapping is the table of docs/architecture.md (Lifecycle kinds) for Okta event types (hooks and
// System Log share the vocabulary). user.risk.change is listed here but only
// counts when the new level is HIGH; the hook decides that.
func DefaultOktaMapping() Mapping {
	return Mapping{
		"user.lifecycle.deactivate":                      KindDeprovisioned,
		"user.lifecycle.delete.initiated":                KindDeprovisioned,
		"user.lifecycle.suspend":                         KindSuspended,
		"user.account.lock":                              KindSuspended,
		"user.session.clear":                             KindSessionsRevoked,
		"user.authentication.universal_logout":           KindSessionsRevoked,
		"user.authentication.universal_logout.scheduled": KindSessionsRevoked,
		"user.account.reset_password":                    KindCredentialsChanged,
		"user.mfa.factor.reset_all":                      KindCredentialsChanged,
		"application.user_membership.remove":             KindAccessRemoved,
		"group.user_membership.remove":                   KindAccessRemoved,
		"user.risk.change":                               KindRiskElevated,
		"security.breached_credential.detected":          KindRiskElevated,
		"policy.auth_reevaluate.fail":                    KindRiskElevated,
		"user.lifecycle.activate":                        KindReactivated,
		"user.lifecycle.reactivate":                      KindReactivated,
		"user.lifecycle.unsuspend":                       KindReactivated,
	}
}

// With returns a copy of m with overrides applied. An override to the empty
// kind removes the type from the table (it is then ignored and audited so).
func (m Mapping) With(overrides map[string]string) (Mapping, error) {
	out := maps.Clone(m)
	var bad []string
	for typ, kind := range overrides {
		if kind == "" || kind == "ignore" {
			delete(out, typ)
			continue
		}
		if !Kind(kind).Valid() {
			bad = append(bad, fmt.Sprintf("%s: %q", typ, kind))
			continue
		}
		out[typ] = Kind(kind)
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, fmt.Errorf("unknown kinds in mapping: %v", bad)
	}
	return out, nil
}
