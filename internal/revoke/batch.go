package revoke

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// BatchHeader marks a REVOKE message that carries a Batch (its value is the
// number of jobs); a message without it carries one Job.
const BatchHeader = "Lw-Batch"

// BatchIDHeader carries a batch's ID (derived from its jobs' IDs: the key of
// its saved progress). It is not the message ID, so the REVOKE stream keeps
// no dedup entry for each batch for a day: only a plan written again in
// exactly the same group would publish a batch again alike, and a repeated
// job is harmless (revocation is idempotent; the index marks its records
// repeats) (docs/decisions/0014).
const BatchIDHeader = "Lw-Batch-Id"

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

// Progress remembers which jobs of a batch have finished, so that a batch
// delivered again after a crash does not repeat them (a NATS KV bucket).
type Progress interface {
	Load(ctx context.Context, batch string) ([]string, error)
	Save(ctx context.Context, batch string, done []string) error
	Delete(ctx context.Context, batch string) error
}

// progressEvery is how often a running batch saves which of its jobs have
// finished: a crash repeats at most this much of its finished work.
var progressEvery = time.Second

// ExecuteBatch runs each job of a batch, at most the target's concurrency at
// once. A job that must come back later (its attempt failed and will be
// retried, the target holds it, or its outcome could not be recorded) leaves
// the batch as a message of its own, due when its retry is, so that no
// other job of the batch is repeated for it. While the batch runs, the jobs
// that finished are saved every progressEvery (when a progress log is set),
// and a batch delivered again skips them; so a crash repeats only the jobs
// that finished since the last save, and those in flight. seen says the
// batch may have run before, so its saved progress is loaded. A nil error means
// every job is finished or handed off and the batch may be acked; an error
// means the hand-off failed and the batch must be redelivered.
func (e *Executor) ExecuteBatch(ctx context.Context, id string, jobs []Job, delivered int, seen bool) error {
	t := e.target
	if t.Breaker != nil {
		// Held as a whole: no job starts, none is split off.
		if wait := t.Breaker.Remaining(); wait > 0 {
			return &RetryError{In: jitter(wait), Reason: "target unavailable, batch waits"}
		}
	}
	var (
		mu    sync.Mutex
		left  []Job
		done  []string
		saved int
		wg    sync.WaitGroup
	)
	skip := map[string]bool{}
	// seen: the batch may have run before (bus.MaybeSeen), counted or not.
	if e.Progress != nil && seen {
		ids, err := e.Progress.Load(ctx, id)
		if err != nil {
			return fmt.Errorf("load progress of %s: %w", id, err)
		}
		for _, j := range ids {
			skip[j] = true
		}
		done = ids
		saved = len(ids)
	}
	save := func() {
		if e.Progress == nil {
			return
		}
		mu.Lock()
		if len(done) == saved {
			mu.Unlock()
			return
		}
		snapshot := slices.Clone(done)
		mu.Unlock()
		if err := e.Progress.Save(ctx, id, snapshot); err != nil {
			e.log.WarnContext(ctx, "batch progress not saved (a crash would repeat more)", "batch", id, "err", err)
			return
		}
		mu.Lock()
		saved = max(saved, len(snapshot))
		mu.Unlock()
	}
	stop := make(chan struct{})
	var saver sync.WaitGroup
	if e.Progress != nil {
		saver.Add(1)
		go func() {
			defer saver.Done()
			tick := time.NewTicker(progressEvery)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					save()
				case <-stop:
					return
				}
			}
		}()
	}
	for i, job := range jobs {
		if skip[job.ID] {
			continue
		}
		if e.Stopping != nil && e.Stopping() {
			// Shutting down: the jobs not started leave as messages of
			// their own, so that no finished job is repeated for them.
			for _, rest := range jobs[i:] {
				if skip[rest.ID] {
					continue
				}
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
		wg.Add(1)
		e.run(func() {
			defer wg.Done()
			err := e.Execute(ctx, job, delivered)
			if err == nil {
				mu.Lock()
				done = append(done, job.ID)
				mu.Unlock()
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
		})
	}
	wg.Wait()
	close(stop)
	saver.Wait()
	if len(left) > 0 {
		if err := e.queue.Enqueue(ctx, left); err != nil {
			save() // what finished stays finished when the batch comes back
			return err
		}
	}
	if e.Progress != nil && saved > 0 {
		if err := e.Progress.Delete(ctx, id); err != nil {
			e.log.WarnContext(ctx, "batch progress not cleared (it expires)", "batch", id, "err", err)
		}
	}
	return nil
}

// workerIdle is how long a batch worker waits for its next job before it
// ends.
const workerIdle = 30 * time.Second

// run gives task to an idle batch worker, or starts a worker while fewer
// than the bound run, else waits for either. Workers outlive the jobs and
// batches they run: a goroutine per job grew its stack anew for every
// signature, ~4 % of the worker's CPU under load (docs/decisions/0014).
func (e *Executor) run(task func()) {
	select {
	case e.tasks <- task:
		return
	default:
	}
	select {
	case e.tasks <- task:
	case e.workers <- struct{}{}:
		go e.work(task)
	}
}

// work runs task, then the tasks given to it, until none comes for
// workerIdle.
func (e *Executor) work(task func()) {
	defer func() { <-e.workers }()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		task()
		idle.Reset(workerIdle)
		select {
		case task = <-e.tasks:
		case <-idle.C:
			return
		}
	}
}
