package revoke

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/packed"
)

// Executor runs one target's jobs.
type Executor struct {
	target   *Target
	queue    Queue
	recorder audit.Recorder
	attempts AttemptLog
	now      func() time.Time
	log      *slog.Logger
	// slots holds one token per request in flight to the target, across
	// every message being handled: batches and single jobs alike.
	slots chan struct{}
	// workers bounds the jobs of batches under way (calling, waiting for
	// a slot, recording): one token per worker goroutine.
	workers chan struct{}
	// tasks hands jobs of batches to idle workers (see run).
	tasks chan func()
	// Yield, if set, is called before each job of a batch starts (intake
	// first: see the serve command).
	Yield func()
	// Stopping, if set, says the process is shutting down: a batch starts
	// no more jobs and hands the rest off.
	Stopping func() bool
	// Progress, if set, keeps which jobs of a running batch finished.
	Progress Progress
	// Backlog is REVOKE's last sequence when this process started: a
	// batch that may have run before (bus.MaybeSeen) loads its saved
	// progress.
	Backlog uint64
}

// NewExecutor returns the executor of target.
func NewExecutor(t *Target, q Queue, rec audit.Recorder, attempts AttemptLog, now func() time.Time, log *slog.Logger) (*Executor, error) {
	if t == nil || q == nil || rec == nil || attempts == nil || now == nil || log == nil {
		return nil, errors.New("executor: target, queue, recorder, attempt log, clock and logger are required")
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &Executor{target: t, queue: q, recorder: rec, attempts: attempts, now: now, log: log.With("target", t.Name),
		slots: make(chan struct{}, t.Concurrency), workers: make(chan struct{}, 2*t.Concurrency), tasks: make(chan func())}, nil
}

// RetryError asks for the job's redelivery after In: a failed attempt (the
// target's backoff for that attempt) or a wait while the target's breaker
// is open or its Retry-After runs (not an attempt).
type RetryError struct {
	In     time.Duration
	Reason string
}

func (e *RetryError) Error() string { return e.Reason + "; again in " + e.In.String() }

// Execute runs the next attempt of job; delivered is the JetStream delivery
// count. A nil error means the job is finished (succeeded, not applicable or
// dead-lettered) and may be acked; any error means it must be redelivered.
func (e *Executor) Execute(ctx context.Context, job Job, delivered int) error {
	t := e.target
	if t.Breaker != nil {
		if wait := t.Breaker.Wait(); wait > 0 {
			return &RetryError{In: jitter(wait), Reason: "target unavailable, job waits"}
		}
	}
	release := func() {
		if t.Breaker != nil {
			t.Breaker.Release()
		}
	}
	// The attempts so far: none on a first delivery, else from the log
	// (deliveries also count waits and crashes, attempts do not).
	var history []Attempt
	if delivered > 1 {
		h, err := e.attempts.Load(ctx, job.attemptKey())
		if err != nil {
			release()
			return fmt.Errorf("load attempts of %s: %w", job.ID, err)
		}
		history = h
	}
	if n := len(history); n > 0 {
		// Redelivered before the wait the last attempt set was over (a
		// restart lost the server's delay, docs/decisions/0020): wait the
		// rest, not an attempt. A second early is not worth a round trip;
		// a wait longer than any attempt sets is not ours, and not kept.
		if wait := history[n-1].Due.Sub(e.now()); wait > time.Second && wait <= t.longestWait() {
			release()
			return &RetryError{In: wait, Reason: "attempt " + strconv.Itoa(n) + " failed; the next is not due yet"}
		}
	}
	attempt := len(history) + 1
	if attempt > t.MaxAttempts {
		release()
		return e.deadLetter(ctx, job, history, "attempts exhausted", nil)
	}
	if t.Limiter != nil {
		if err := t.Limiter.Wait(ctx); err != nil {
			release()
			return fmt.Errorf("rate limit: %w", err)
		}
	}
	var resolvedFrom string
	job.Subject, resolvedFrom = t.Resolver.Complete(ctx, t.Timeout, t.SubjectFormat, job.Subject)
	// A slot is held for the call only: recording its outcome does not
	// occupy the target's concurrency.
	e.slots <- struct{}{}
	callCtx, cancel := context.WithTimeout(ctx, t.Timeout)
	start := time.Now()
	res := t.Driver.Revoke(callCtx, job)
	cancel()
	<-e.slots
	latency := time.Since(start)
	if res.Class == 0 {
		res = Result{Class: Permanent, Err: errors.New("driver returned no classification")}
	}
	if t.Breaker != nil {
		switch res.Class {
		case Retry:
			t.Breaker.Failure(min(res.RetryAfter, t.MaxRetryAfter))
		default:
			t.Breaker.Success()
		}
	}

	// Every attempt is on record exactly once: as revocation.attempted
	// when the job goes on, or as the record that ends it.
	rec := jobRecord(job, audit.TypeRevocationAttempted, e.now().UTC())
	rec.Driver, rec.Attempt, rec.Outcome = t.DriverName, attempt, res.Class.String()
	rec.HTTPStatus, rec.LatencyMS = res.HTTPStatus, latency.Milliseconds()
	if res.Err != nil {
		rec.Error = Redact(res.Err.Error(), t.Secrets)
		res.Err = errors.New(rec.Error)
	}
	detail := res.Detail
	if detail == nil {
		detail = map[string]any{}
	}
	for k, v := range detail {
		if s, ok := v.(string); ok {
			detail[k] = Redact(s, t.Secrets)
		}
	}
	if resolvedFrom != "" {
		detail["email_from"] = resolvedFrom // the event had none; this is what was used
	}

	this := Attempt{N: attempt, At: rec.Time, HTTPStatus: res.HTTPStatus, LatencyMS: rec.LatencyMS, Outcome: res.Class.String(), Error: rec.Error}
	history = append(history, this)

	switch {
	case res.Class == Succeeded || res.Class == NotApplicable:
		rec.Type, rec.Outcome = audit.TypeRevocationSucceeded, "succeeded"
		if res.Class == NotApplicable {
			rec.Type, rec.Outcome = audit.TypeRevocationNotApplicable, "not_applicable"
		}
		rec.ID = job.recordID() + "/" + rec.Outcome
		detail["time_to_revoke_ms"] = rec.Time.Sub(job.ReceivedAt).Milliseconds()
		if res.Class == Succeeded {
			if until := t.exposure(rec.Time); until != nil {
				detail["exposed_until"] = *until
			} else {
				detail["exposure"] = "unknown: the target declares no max_token_lifetime"
			}
			if t.ConfirmWindow > 0 {
				// Expected before the record says so: a crash between
				// repeats both, harmlessly.
				deadline := rec.Time.Add(t.ConfirmWindow)
				if err := t.Confirmations.Expect(ctx, Awaiting{EventID: job.EventID, RecordID: job.recordID(), Target: t.Name,
					Source: string(job.Source), Kind: string(job.Kind), Subject: job.Subject, Accepted: rec.Time, Deadline: deadline}); err != nil {
					return fmt.Errorf("expect confirmation of %s: %w", job.ID, err)
				}
				detail["confirmation_expected_by"] = deadline
			}
		}
		rec.Detail = audit.Detail(detail)
		if err := e.recorder.Record(ctx, rec); err != nil {
			return fmt.Errorf("record %s: %w", job.ID, err)
		}
		if delivered > 1 {
			if err := e.attempts.Delete(ctx, job.attemptKey()); err != nil {
				e.log.WarnContext(ctx, "attempt log not cleared (it expires)", "job", job.ID, "err", err)
			}
		}
		if e.log.Enabled(ctx, slog.LevelDebug) { // its arguments are built per revocation
			e.log.DebugContext(ctx, "revocation "+rec.Outcome, "job", job.ID, "attempt", attempt, "status", res.HTTPStatus)
		}
		return nil
	case res.Class == Retry && attempt < t.MaxAttempts:
		rec.ID = fmt.Sprintf("%s/attempt/%d", job.recordID(), attempt)
		rec.Detail = audit.Detail(detail)
		// On record first, then counted: a crash between repeats the
		// attempt under the same record ID, which the index marks a repeat.
		if err := e.recorder.Record(ctx, rec); err != nil {
			return fmt.Errorf("record %s: %w", job.ID, err)
		}
		in := t.backoff(attempt)
		if t.Breaker != nil {
			in = max(in, t.Breaker.Remaining()) // a Retry-After, an opened breaker
		}
		history[len(history)-1].Due = rec.Time.Add(in)
		if err := e.attempts.Save(ctx, job.attemptKey(), history); err != nil {
			return fmt.Errorf("save attempts of %s: %w", job.ID, err)
		}
		e.log.WarnContext(ctx, "revocation will be retried", "job", job.ID, "attempt", attempt, "status", res.HTTPStatus, "err", res.Err, "in", in)
		return &RetryError{In: in, Reason: "attempt " + strconv.Itoa(attempt) + " failed"}
	default:
		reason := "permanent: " + errString(res.Err)
		if res.Class == Retry {
			reason = "out of attempts: " + errString(res.Err)
		}
		rec.Detail = audit.Detail(detail)
		return e.deadLetter(ctx, job, history, reason, &rec)
	}
}

// deadLetter moves the job, with its attempt history, to REVOKE_DLQ and
// records it. last is the record of the attempt that ended the job (nil when
// no attempt ran now).
func (e *Executor) deadLetter(ctx context.Context, job Job, history []Attempt, reason string, last *audit.Record) error {
	now := e.now().UTC()
	attempts := len(history)
	dl := DeadLetter{Job: job, Attempts: attempts, History: history, Reason: reason, At: now}
	rec := jobRecord(job, audit.TypeRevocationDeadLettered, now)
	rec.Driver, rec.Attempt = e.target.DriverName, attempts
	if last != nil {
		rec = *last
		dl.HTTPStatus = last.HTTPStatus
	}
	rec.Type, rec.ID, rec.Outcome, rec.Error = audit.TypeRevocationDeadLettered, job.recordID()+"/dead_lettered", "dead_lettered", reason
	if err := e.queue.DeadLetter(ctx, dl); err != nil {
		return fmt.Errorf("dead-letter %s: %w", job.ID, err)
	}
	if err := e.recorder.Record(ctx, rec); err != nil {
		return fmt.Errorf("record %s: %w", job.ID, err)
	}
	if err := e.attempts.Delete(ctx, job.attemptKey()); err != nil {
		e.log.WarnContext(ctx, "attempt log not cleared (it expires)", "job", job.ID, "err", err)
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

// Handler is the Watermill handler over the target's REVOKE messages: a
// batch (BatchHeader) or one job, packed (packed.EncodingHeader) or not.
func (e *Executor) Handler(msg *message.Message) error {
	ctx := msg.Context()
	delivered := bus.Delivered(msg)
	var encoding []string
	if v := msg.Metadata.Get(packed.EncodingHeader); v != "" {
		encoding = []string{v}
	}
	payload, err := packed.Unpack(msg.Payload, encoding)
	if err != nil {
		// Its bytes are not text: kept in base64.
		return e.undecodable(ctx, msg, []byte(base64.StdEncoding.EncodeToString(msg.Payload)),
			"undecodable message (its bytes in base64): "+err.Error())
	}
	if count := msg.Metadata.Get(BatchHeader); count != "" {
		n, _ := strconv.Atoi(count)
		b, err := DecodeBatch(payload, n)
		if err != nil {
			return e.undecodable(ctx, msg, payload, "undecodable batch: "+err.Error())
		}
		id := msg.Metadata.Get(BatchIDHeader)
		if id == "" {
			id = msg.UUID // published before BatchIDHeader: its message ID
		}
		return e.retryIn(msg, e.ExecuteBatch(context.WithoutCancel(ctx), id, b.Jobs, delivered, bus.MaybeSeen(msg, e.Backlog)))
	}
	job, err := DecodeJob(payload)
	if err != nil {
		return e.undecodable(ctx, msg, payload, "undecodable job: "+err.Error())
	}
	if wait := job.NotBefore.Sub(e.now()); wait > 0 {
		return e.retryIn(msg, &RetryError{In: wait, Reason: "not due yet"})
	}
	if job.Continues {
		delivered = max(delivered, 2) // its attempts so far are in the log
	}
	return e.retryIn(msg, e.Execute(context.WithoutCancel(ctx), job, delivered))
}

// keptUndecodable is how much of an undecodable message its dead letter
// keeps: a quarter of the server's default largest message, so that the
// dead letter, its bytes escaped or in base64, fits in one.
const keptUndecodable = 256 << 10

// undecodable dead-letters a message nobody can read, keeping its bytes: it
// still gets a dead letter and a record, never a silent drop.
func (e *Executor) undecodable(ctx context.Context, msg *message.Message, body []byte, reason string) error {
	if len(body) > keptUndecodable {
		// The dead letter must fit in a message of its own.
		reason = fmt.Sprintf("%s (its first %d of %d bytes kept)", reason, keptUndecodable, len(body))
		body = body[:keptUndecodable]
	}
	job := Job{ID: "undecodable/" + msg.UUID, Target: e.target.Name, Cause: string(body)}
	return e.deadLetter(ctx, job, nil, reason, nil)
}

// retryIn passes a RetryError's delay on to the subscriber.
func (e *Executor) retryIn(msg *message.Message, err error) error {
	var retry *RetryError
	if errors.As(err, &retry) {
		bus.RetryIn(msg, retry.In)
	}
	return err
}
