package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
)

// activity logs one info line per outcome — a delivery accepted, a
// duplicate, a refusal, a revocation's end — at most a few lines a second:
// past that, lines are counted and one summary line says how many were left
// out. What happened is always complete in the audit trail; the log is for
// the person watching.
type activity struct {
	log        *slog.Logger
	lim        *rate.Limiter
	suppressed atomic.Int64
}

func newActivity(log *slog.Logger) *activity {
	return &activity{log: log, lim: rate.NewLimiter(5, 20)}
}

// record logs what a record says happened, if it is an outcome.
func (a *activity) record(r audit.Record) {
	if a == nil {
		return
	}
	var msg string
	switch r.Type {
	case audit.TypeEventReceived:
		msg = "event received"
		if r.Outcome == audit.OutcomeDuplicate {
			msg = "event received again (duplicate): revoked once"
		}
	case audit.TypeEventIgnored:
		msg = "event ignored"
	case audit.TypeEventRejected:
		msg = "input rejected"
	case audit.TypeAuthFailed:
		msg = "request refused: authentication"
	case audit.TypeRevocationSucceeded:
		msg = "revoked"
	case audit.TypeRevocationNotApplicable:
		msg = "revocation not applicable (the target does not know the subject)"
	case audit.TypeRevocationAttempted:
		msg = "revocation attempt failed; will retry"
	case audit.TypeRevocationDeadLettered:
		msg = "revocation dead-lettered: needs a person (lifecycle-worker dlq list)"
	case audit.TypeRevocationConfirmed:
		msg = "revocation confirmed by the authorization server"
	case audit.TypeStream:
		msg = "ssf stream " + r.Outcome
	default:
		return
	}
	if !a.lim.Allow() {
		a.suppressed.Add(1)
		return
	}
	args := []any{"event", r.EventID, "source", r.Source}
	if r.Subject != nil {
		args = append(args, "subject", r.Subject.Label())
	}
	if r.Target != "" {
		args = append(args, "target", r.Target, "attempt", r.Attempt)
	}
	if r.HTTPStatus != 0 {
		args = append(args, "http", r.HTTPStatus)
	}
	if r.Error != "" {
		args = append(args, "reason", audit.BoundString(r.Error))
	}
	a.log.Info(msg, args...)
}

// run writes the summary of suppressed lines every interval.
func (a *activity) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.flush(every)
			return
		case <-t.C:
			a.flush(every)
		}
	}
}

func (a *activity) flush(every time.Duration) {
	if n := a.suppressed.Swap(0); n > 0 {
		a.log.Info("busy: activity lines left out of the log (the audit trail has every one)", "lines", n, "in_last", every)
	}
}
