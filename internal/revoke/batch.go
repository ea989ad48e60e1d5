package revoke

import (
	"context"
	"errors"
	"sync"
	"time"
)

// BatchHeader marks a REVOKE message that carries a Batch (its value is the
// number of jobs); a message without it carries one Job.
const BatchHeader = "Lw-Batch"

// MaxBatch is the most jobs one REVOKE message carries: a batch runs at the
// target's concurrency, so this bounds how long one message is held.
const MaxBatch = 100

// Batch is several jobs of one target in one REVOKE message: the jobs the
// planner made from the events it committed together (docs/decisions/0014).
// One message instead of one per job is where most of the pipeline's cost
// per revocation went: a publish, a delivery, an ack and a removal each.
type Batch struct {
	Jobs []Job `json:"jobs"`
}

// ExecuteBatch runs each job of a batch, at most the target's concurrency at
// once. A job that must come back later (its attempt failed and will be
// retried, the target holds it, or its outcome could not be recorded) leaves
// the batch as a message of its own, due when its retry is, so that no
// other job of the batch is repeated for it. A nil error means every job is
// finished or handed off and the batch may be acked; an error means the
// hand-off failed and the whole batch must be redelivered (jobs that
// finished repeat their call; their records keep their IDs, and the index
// marks them repeats).
func (e *Executor) ExecuteBatch(ctx context.Context, jobs []Job, delivered int) error {
	t := e.target
	if t.Breaker != nil {
		// Held as a whole: no job starts, none is split off.
		if wait := t.Breaker.Remaining(); wait > 0 {
			return &RetryError{In: jitter(wait), Reason: "target unavailable, batch waits"}
		}
	}
	var (
		mu   sync.Mutex
		left []Job
		wg   sync.WaitGroup
	)
	for i, job := range jobs {
		if e.Stopping != nil && e.Stopping() {
			// Shutting down: the jobs not started leave as messages of
			// their own, so that no finished job is repeated for them.
			for _, rest := range jobs[i:] {
				rest.Continues, rest.NotBefore = true, time.Time{}
				mu.Lock()
				left = append(left, rest)
				mu.Unlock()
			}
			break
		}
		if e.Yield != nil {
			e.Yield()
		}
		e.workers <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := e.Execute(ctx, job, delivered)
			<-e.workers
			if err == nil {
				return
			}
			in := time.Second // recording failed: soon, as a nak would
			if retry := (*RetryError)(nil); errors.As(err, &retry) {
				in = retry.In
			} else {
				e.log.WarnContext(ctx, "job leaves its batch to be redone", "job", job.ID, "err", err)
			}
			job.Continues, job.NotBefore = true, e.now().UTC().Add(in)
			mu.Lock()
			left = append(left, job)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(left) == 0 {
		return nil
	}
	return e.queue.Enqueue(ctx, left)
}
