package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
)

// Executor runs one target's jobs.
type Executor struct {
	target   *Target
	queue    Queue
	recorder audit.Recorder
	now      func() time.Time
	log      *slog.Logger
}

// NewExecutor returns the executor of target.
func NewExecutor(t *Target, q Queue, rec audit.Recorder, now func() time.Time, log *slog.Logger) (*Executor, error) {
	if t == nil || q == nil || rec == nil || now == nil || log == nil {
		return nil, errors.New("executor: target, queue, recorder, clock and logger are required")
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &Executor{target: t, queue: q, recorder: rec, now: now, log: log.With("target", t.Name)}, nil
}

// ErrRetry is returned to Watermill to have a job redelivered later.
var ErrRetry = errors.New("revocation will be retried")

// Execute runs attempt n of job. A nil error means the job is finished
// (succeeded, not applicable or dead-lettered) and may be acked; ErrRetry or
// any other error means it must be redelivered.
func (e *Executor) Execute(ctx context.Context, job Job, attempt int) error {
	t := e.target
	if attempt > t.MaxAttempts {
		// The previous attempt died before it could record its end (a
		// crash or a lost ack): the budget is spent, keep the job anyway.
		return e.deadLetter(ctx, job, attempt-1, "attempts exhausted", 0)
	}
	callCtx, cancel := context.WithTimeout(ctx, t.Timeout)
	start := time.Now()
	res := t.Driver.Revoke(callCtx, job)
	cancel()
	latency := time.Since(start)
	if res.Class == 0 {
		res = Result{Class: Permanent, Err: errors.New("driver returned no classification")}
	}

	now := e.now().UTC()
	att := jobRecord(job, audit.TypeRevocationAttempted, now)
	att.ID = fmt.Sprintf("%s/attempt/%d", job.ID, attempt)
	att.Driver, att.Attempt, att.Outcome = t.DriverName, attempt, res.Class.String()
	att.HTTPStatus, att.LatencyMS = res.HTTPStatus, latency.Milliseconds()
	if res.Err != nil {
		att.Error = res.Err.Error()
	}
	if len(res.Detail) > 0 {
		att.Detail = audit.Detail(res.Detail)
	}
	recs := []audit.Record{att}

	switch res.Class {
	case Succeeded, NotApplicable:
		typ, outcome := audit.TypeRevocationSucceeded, "succeeded"
		if res.Class == NotApplicable {
			typ, outcome = audit.TypeRevocationNotApplicable, "not_applicable"
		}
		end := jobRecord(job, typ, now)
		end.ID = job.ID + "/" + outcome
		end.Driver, end.Attempt, end.Outcome, end.HTTPStatus = t.DriverName, attempt, outcome, res.HTTPStatus
		end.Detail = audit.Detail(map[string]any{"confirmed_at": now, "time_to_revoke_ms": now.Sub(job.ReceivedAt).Milliseconds()})
		recs = append(recs, end)
		if err := e.recorder.Record(ctx, recs...); err != nil {
			return fmt.Errorf("record %s: %w", job.ID, err)
		}
		e.log.InfoContext(ctx, "revocation "+outcome, "job", job.ID, "attempt", attempt, "status", res.HTTPStatus)
		return nil
	case Retry:
		if err := e.recorder.Record(ctx, recs...); err != nil {
			return fmt.Errorf("record %s: %w", job.ID, err)
		}
		if attempt >= t.MaxAttempts {
			return e.deadLetter(ctx, job, attempt, "out of attempts: "+errString(res.Err), res.HTTPStatus)
		}
		e.log.WarnContext(ctx, "revocation will be retried", "job", job.ID, "attempt", attempt, "status", res.HTTPStatus, "err", res.Err)
		return ErrRetry
	default:
		if err := e.recorder.Record(ctx, recs...); err != nil {
			return fmt.Errorf("record %s: %w", job.ID, err)
		}
		return e.deadLetter(ctx, job, attempt, "permanent: "+errString(res.Err), res.HTTPStatus)
	}
}

func (e *Executor) deadLetter(ctx context.Context, job Job, attempts int, reason string, status int) error {
	now := e.now().UTC()
	if err := e.queue.DeadLetter(ctx, DeadLetter{Job: job, Attempts: attempts, Reason: reason, HTTPStatus: status, At: now}); err != nil {
		return fmt.Errorf("dead-letter %s: %w", job.ID, err)
	}
	rec := jobRecord(job, audit.TypeRevocationDeadLettered, now)
	rec.ID = job.ID + "/dead_lettered"
	rec.Driver, rec.Attempt, rec.Outcome, rec.HTTPStatus, rec.Error = e.target.DriverName, attempts, "dead_lettered", status, reason
	if err := e.recorder.Record(ctx, rec); err != nil {
		return fmt.Errorf("record %s: %w", job.ID, err)
	}
	e.log.ErrorContext(ctx, "revocation dead-lettered", "job", job.ID, "attempts", attempts, "reason", reason)
	return nil
}

func errString(err error) string {
	if err == nil {
		return "no detail"
	}
	return err.Error()
}

// Handler is the Watermill handler over the target's REVOKE messages.
func (e *Executor) Handler(msg *message.Message) error {
	ctx := msg.Context()
	attempt := bus.Delivered(msg)
	var job Job
	err := json.Unmarshal(msg.Payload, &job)
	if why := msg.Metadata.Get(bus.MetaUnreadable); why != "" && err == nil {
		err = errors.New(why)
	}
	if err != nil {
		// Keep the bytes: a job nobody can read still gets a dead letter
		// and a record, never a silent drop.
		job = Job{ID: "undecodable/" + msg.UUID, Target: e.target.Name, Cause: string(msg.Payload)}
		return e.deadLetter(ctx, job, attempt, "undecodable job: "+err.Error(), 0)
	}
	return e.Execute(context.WithoutCancel(ctx), job, attempt)
}
