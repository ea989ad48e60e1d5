package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
)

// DLQStore is the dead-letter stream, as the DeadLetters service needs it.
type DLQStore interface {
	// Scan calls fn for each dead letter on subject filter, oldest first.
	Scan(ctx context.Context, filter string, fn func(seq uint64, data []byte) (bool, error)) error
	// Delete removes a dead letter once it is back in the queue.
	Delete(ctx context.Context, seq uint64) error
}

// DeadLetters lists and replays dead-lettered jobs.
type DeadLetters struct {
	store    DLQStore
	queue    Queue
	recorder audit.Recorder
	now      func() time.Time
}

// NewDeadLetters returns the service.
func NewDeadLetters(store DLQStore, q Queue, rec audit.Recorder, now func() time.Time) (*DeadLetters, error) {
	if store == nil || q == nil || rec == nil || now == nil {
		return nil, errors.New("dead letters: store, queue, recorder and clock are required")
	}
	return &DeadLetters{store: store, queue: q, recorder: rec, now: now}, nil
}

// Listed is a dead letter and its place in the stream.
type Listed struct {
	Seq uint64 `json:"seq"`
	DeadLetter
}

// DLQFilter selects dead letters; zero fields do not filter.
type DLQFilter struct {
	Target  string
	EventID string
	Limit   int // List only; default 1000
}

func (f DLQFilter) subject() string {
	if f.Target != "" {
		return DLQTopic(f.Target)
	}
	return "revoke_dlq.>"
}

// ListFor lists for someone: the look is on record (who, which filter, how
// many), as every operation on dead letters is.
func (d *DeadLetters) ListFor(ctx context.Context, f DLQFilter, actor string) ([]Listed, error) {
	out, err := d.List(ctx, f)
	if err != nil {
		return nil, err
	}
	now := d.now().UTC()
	rec := audit.Record{ID: "dlq.listed/" + uuid.NewString(), Time: now, Type: audit.TypeDLQListed, Target: f.Target, EventID: f.EventID,
		Outcome: "listed", Detail: audit.Detail(map[string]any{"by": actor, "count": len(out)})}
	if err := d.recorder.Record(ctx, rec); err != nil {
		return nil, fmt.Errorf("record dlq list: %w", err)
	}
	return out, nil
}

// List returns matching dead letters, oldest first.
func (d *DeadLetters) List(ctx context.Context, f DLQFilter) ([]Listed, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	var out []Listed
	err := d.store.Scan(ctx, f.subject(), func(seq uint64, data []byte) (bool, error) {
		var dl DeadLetter
		if err := json.Unmarshal(data, &dl); err != nil {
			dl = DeadLetter{Reason: "undecodable dead letter: " + err.Error()}
		}
		if f.EventID == "" || dl.Job.EventID == f.EventID {
			out = append(out, Listed{Seq: seq, DeadLetter: dl})
		}
		return len(out) < f.Limit, nil
	})
	return out, err
}

// Replay puts matching dead letters back in their target's queue as a new
// generation of the job (fresh attempts, records of their own), records
// revocation.replayed naming who asked, and removes them from the DLQ.
func (d *DeadLetters) Replay(ctx context.Context, f DLQFilter, actor string) ([]Listed, error) {
	all, err := d.List(ctx, DLQFilter{Target: f.Target, EventID: f.EventID, Limit: 1 << 30})
	if err != nil {
		return nil, err
	}
	var done []Listed
	for _, l := range all {
		job := l.Job
		if job.ID == "" || job.Target == "" {
			continue // undecodable: left in place for a human
		}
		job.Replay++
		job.ReplayOf = l.Seq
		// The record first, so that the trail has the replay before the
		// outcome of the new attempt; both IDs derive from the dead letter,
		// so a repeated replay after a failure here is harmless.
		now := d.now().UTC()
		rec := jobRecord(job, audit.TypeRevocationReplayed, now)
		rec.ID = fmt.Sprintf("%s/replayed/%d", job.ID, l.Seq)
		rec.Outcome = "replayed"
		rec.Detail = audit.Detail(map[string]any{"by": actor, "dlq_seq": l.Seq, "reason_was": l.Reason, "generation": job.Replay})
		if err := d.recorder.Record(ctx, rec); err != nil {
			return done, fmt.Errorf("record replay of %s: %w", job.ID, err)
		}
		if err := d.queue.Enqueue(ctx, []Job{job}); err != nil {
			return done, fmt.Errorf("replay %s: %w", job.ID, err)
		}
		if err := d.store.Delete(ctx, l.Seq); err != nil {
			return done, fmt.Errorf("remove dead letter %d: %w", l.Seq, err)
		}
		done = append(done, l)
	}
	return done, nil
}
