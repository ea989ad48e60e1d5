package revoke

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// stuckLookup answers only when its context ends, and says what deadline
// it was given.
type stuckLookup struct {
	calls    atomic.Int32
	deadline time.Time
}

func (l *stuckLookup) Email(ctx context.Context, _ events.Subject) (string, error) {
	l.calls.Add(1)
	l.deadline, _ = ctx.Deadline()
	<-ctx.Done()
	return "", ctx.Err()
}

func (l *stuckLookup) Name() string { return "stuck" }

// A subject that carries what the target needs is not looked up; one that
// is looked up is bounded by the target's timeout (a lookup that never
// answers gives up, and the job goes on without the email), whatever the
// caller's context allows.
func TestResolverBoundsOnlyALookup(t *testing.T) {
	l := &stuckLookup{}
	r := &Resolver{Lookups: []Lookup{l}, TTL: time.Hour, Now: time.Now}
	withEmail := events.Subject{Issuer: "https://acme.okta.com", ID: "00u1", Email: "a@example.com"}
	if s, from := r.Complete(context.Background(), time.Hour, "email", withEmail); s != withEmail || from != "" || l.calls.Load() != 0 {
		t.Fatalf("a subject with its email: %+v from %q, %d lookups", s, from, l.calls.Load())
	}
	// The caller's context has no deadline: Complete returns only if the
	// timeout it was given ended the lookup.
	s, from := r.Complete(context.Background(), 20*time.Millisecond, "email", events.Subject{Issuer: "https://acme.okta.com", ID: "00u2"})
	returned := time.Now()
	if l.calls.Load() != 1 || s.Email != "" || from != "" {
		t.Fatalf("a stuck lookup: %d calls, %+v from %q", l.calls.Load(), s, from)
	}
	if l.deadline.IsZero() || l.deadline.After(returned) {
		t.Fatalf("the lookup's deadline %v, returned %v", l.deadline, returned)
	}
}
