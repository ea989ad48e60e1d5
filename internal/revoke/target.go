package revoke

import (
	"errors"
	"math/rand/v2"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Target is one place to revoke at, with its driver and its policy.
type Target struct {
	Name       string
	DriverName string
	// Issuer is the authorization server's issuer (the audience of its
	// ID-JAGs); empty when not configured.
	Issuer        string
	SubjectFormat string
	// Resolver completes subjects lacking the identifier the format needs.
	Resolver    *Resolver
	Driver      Driver
	Kinds       []events.Kind
	ScopeApps   []string // IdP ids or names; access_removed needs a match
	ScopeGroups []string
	Concurrency int
	Timeout     time.Duration
	MaxAttempts int
	Backoff     []time.Duration
	// MaxTokenLifetime and RevokesAccessTokens give the residual exposure
	// after a revocation: none if access tokens die with it, else until
	// the longest-lived token issued before it expires (unknown if 0).
	MaxTokenLifetime    time.Duration
	RevokesAccessTokens bool
	// Secrets are the credentials configured for this target: never in an
	// error or a record, whatever the target echoes back.
	Secrets []string
	// Breaker holds jobs while the target is down (nil: never).
	Breaker *Breaker
	// Limiter caps the request rate (nil: no cap).
	Limiter *rate.Limiter
	// MaxRetryAfter caps how long a Retry-After may hold the target.
	MaxRetryAfter time.Duration
	// ConfirmWindow, when set, is how long after its 2xx the target's
	// authorization server has to confirm a revocation with a signed SET;
	// Confirmations keeps the revocations waiting for one.
	ConfirmWindow time.Duration
	Confirmations ConfirmLog
}

// exposure says until when a token issued before a revocation confirmed at
// t could still be used here; nil means unknown.
func (t *Target) exposure(confirmed time.Time) *time.Time {
	switch {
	case t.RevokesAccessTokens:
		return &confirmed
	case t.MaxTokenLifetime > 0:
		until := confirmed.Add(t.MaxTokenLifetime)
		return &until
	}
	return nil
}

// Validate checks what the executor relies on.
func (t *Target) Validate() error {
	var errs []error
	if t.Name == "" {
		errs = append(errs, errors.New("target without name"))
	}
	if t.Driver == nil {
		errs = append(errs, errors.New("target "+t.Name+": nil driver"))
	}
	if t.ConfirmWindow > 0 && t.Confirmations == nil {
		errs = append(errs, errors.New("target "+t.Name+": confirmations expected but nowhere to keep them"))
	}
	if t.Concurrency < 1 || t.Timeout <= 0 || t.MaxAttempts < 1 || len(t.Backoff) == 0 {
		errs = append(errs, errors.New("target "+t.Name+": concurrency, timeout, max attempts and backoff must be set"))
	}
	return errors.Join(errs...)
}

// Wants reports whether the target acts on ev, and if not, why.
func (t *Target) Wants(ev events.Event) (bool, string) {
	if !slices.Contains(t.Kinds, ev.Kind) {
		return false, "kind " + string(ev.Kind) + " not in target kinds"
	}
	if ev.Kind != events.KindAccessRemoved {
		return true, ""
	}
	// Losing one app or group revokes only where that app or group is the
	// way in; a target without a scope does not act on partial removals.
	for _, ref := range ev.Scope.Apps {
		if slices.Contains(t.ScopeApps, ref.ID) || (ref.Name != "" && slices.Contains(t.ScopeApps, ref.Name)) {
			return true, ""
		}
	}
	for _, ref := range ev.Scope.Groups {
		if slices.Contains(t.ScopeGroups, ref.ID) || (ref.Name != "" && slices.Contains(t.ScopeGroups, ref.Name)) {
			return true, ""
		}
	}
	return false, "removed apps/groups not in target scope"
}

// backoff is the wait after failed attempt n (1-based): the schedule's
// entry (its last entry repeats), with ±10% jitter so that a burst of
// failures does not come back as a burst.
func (t *Target) backoff(n int) time.Duration {
	i := min(n-1, len(t.Backoff)-1)
	return jitter(t.Backoff[max(i, 0)])
}

// longestWait bounds the wait an attempt can set before the next: its
// backoff with jitter, a Retry-After (capped), an open breaker's cooldown.
// A due time further off than that was not set by an attempt.
func (t *Target) longestWait() time.Duration {
	d := t.MaxRetryAfter
	for _, b := range t.Backoff {
		d = max(d, b+b/10)
	}
	if t.Breaker != nil {
		d = max(d, t.Breaker.Cooldown, t.Breaker.MaxCooldown)
	}
	return d
}

// RetryDelay is the redelivery delay when a handler failed without saying
// when (an error before the attempt, e.g. the broker): the backoff by
// delivery count, at least until an open breaker closes.
func (t *Target) RetryDelay(delivered uint64) time.Duration {
	d := t.backoff(int(delivered))
	if t.Breaker != nil {
		d = max(d, t.Breaker.Remaining())
	}
	return d
}

func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
}
