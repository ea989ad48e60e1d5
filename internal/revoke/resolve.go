package revoke

import (
	"context"
	"sync"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Lookup finds the email of a user the IdP knows by id (the Okta API; the
// SCIM store later).
type Lookup interface {
	Email(ctx context.Context, s events.Subject) (email string, err error)
	Name() string // what the audit trail says was used
}

// Resolver completes subjects that lack the identifier a target needs, and
// caches what it learns for TTL.
type Resolver struct {
	Lookups []Lookup
	TTL     time.Duration
	Now     func() time.Time

	mu      sync.Mutex
	cache   map[string]resolved
	pending map[string]*sync.Mutex // one lookup per user at a time
}

type resolved struct {
	email, source string
	at            time.Time
}

// Complete fills s.Email for the email format when the event had none (and
// the login is not an email). It returns the subject and where the email
// came from ("" when nothing was needed or found). A lookup is bounded by
// timeout.
func (r *Resolver) Complete(ctx context.Context, timeout time.Duration, format string, s events.Subject) (events.Subject, string) {
	if r == nil || format != "email" || s.Email != "" || s.ID == "" {
		return s, ""
	}
	if _, usedLogin, err := NewSubjectID(format, s); err == nil && usedLogin {
		return s, "" // the login is an email address
	}
	key := s.Issuer + "|" + s.ID
	r.mu.Lock()
	if r.pending == nil {
		r.pending = map[string]*sync.Mutex{}
	}
	one := r.pending[key]
	if one == nil {
		one = &sync.Mutex{}
		r.pending[key] = one
	}
	r.mu.Unlock()
	// Targets resolve the same user at the same moment: the first asks,
	// the others wait for its answer.
	one.Lock()
	defer one.Unlock()
	r.mu.Lock()
	if c, ok := r.cache[key]; ok && r.Now().Sub(c.at) < r.TTL {
		r.mu.Unlock()
		s.Email = c.email
		return s, c.source + " (cached)"
	}
	r.mu.Unlock()
	// Only a lookup is bounded: most jobs carry what they need and return
	// above without a timer.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, l := range r.Lookups {
		email, err := l.Email(ctx, s)
		if err != nil || email == "" {
			continue
		}
		r.mu.Lock()
		if r.cache == nil {
			r.cache = map[string]resolved{}
		}
		r.cache[key] = resolved{email: email, source: l.Name(), at: r.Now()}
		r.mu.Unlock()
		s.Email = email
		return s, l.Name()
	}
	return s, ""
}
