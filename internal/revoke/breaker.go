package revoke

import (
	"sync"
	"time"
)

// Breaker keeps a target's jobs waiting, rather than burning their
// attempts, while the target is down or has asked us to back off. It opens
// after Failures consecutive transient failures, for Cooldown (doubling on
// each failed probe, up to MaxCooldown); a Retry-After from the target holds
// all jobs until then. It is per process: each replica learns on its own.
type Breaker struct {
	Failures    int
	Cooldown    time.Duration
	MaxCooldown time.Duration
	Now         func() time.Time

	mu        sync.Mutex
	failures  int
	cooldown  time.Duration
	openUntil time.Time
	probing   bool
}

// Wait returns how long a job must wait before calling the target; zero
// means go. After the cool-down one job at a time probes the target.
func (b *Breaker) Wait() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.Now()
	if now.Before(b.openUntil) {
		return b.openUntil.Sub(now)
	}
	if b.failures >= b.Failures && b.Failures > 0 {
		if b.probing {
			return time.Second // another job is probing; come back soon
		}
		b.probing = true
	}
	return 0
}

// Success closes the breaker.
func (b *Breaker) Success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures, b.cooldown, b.probing = 0, 0, false
}

// Failure counts a transient failure; retryAfter (if any) holds every job.
func (b *Breaker) Failure(retryAfter time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.Now()
	b.failures++
	b.probing = false
	if b.Failures > 0 && b.failures >= b.Failures {
		switch {
		case b.cooldown == 0:
			b.cooldown = b.Cooldown
		default:
			b.cooldown = min(2*b.cooldown, b.MaxCooldown)
		}
		b.openUntil = now.Add(b.cooldown)
	}
	if retryAfter > 0 && now.Add(retryAfter).After(b.openUntil) {
		b.openUntil = now.Add(retryAfter)
	}
}

// Neutral releases a probe whose outcome says nothing about availability
// (a permanent answer is still an answer: the target is up).
func (b *Breaker) Neutral() { b.Success() }

// Release gives up a probe without an outcome (the job could not run).
func (b *Breaker) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
}

// Remaining is how long the breaker stays open (0 when closed).
func (b *Breaker) Remaining() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return max(b.openUntil.Sub(b.Now()), 0)
}
