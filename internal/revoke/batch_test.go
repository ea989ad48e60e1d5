package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// bySubject answers per subject email: failing ones are retried.
type bySubject struct {
	mu      sync.Mutex
	failing map[string]bool
	calls   map[string]int
	in, max atomic.Int32
	gate    chan struct{} // if set, each call waits for it
}

func (d *bySubject) Revoke(_ context.Context, j Job) Result {
	n := d.in.Add(1)
	defer d.in.Add(-1)
	for m := d.max.Load(); n > m && !d.max.CompareAndSwap(m, n); m = d.max.Load() {
	}
	if d.gate != nil {
		<-d.gate
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls[j.Subject.Email]++
	if d.failing[j.Subject.Email] {
		return Result{Class: Retry, HTTPStatus: 503, Err: errors.New("HTTP 503")}
	}
	return Result{Class: Succeeded, HTTPStatus: 200}
}

func batchOf(n int) []Job {
	jobs := make([]Job, n)
	for i := range jobs {
		ev := fmt.Sprintf("okta:%d", i)
		jobs[i] = Job{ID: JobID(ev, "as1"), EventID: ev, Target: "as1", Kind: events.KindDeprovisioned,
			Subject: events.Subject{Email: fmt.Sprintf("u%d@example.com", i)}}
	}
	return jobs
}

// A job of a batch that must be retried leaves it, alone and due when its
// retry is, with its attempt on record and in the attempt log; the other
// jobs are done once and not repeated; the continuing job, when due, is its
// second attempt.
func TestBatchHandsOffOnlyTheJobToRetry(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	drv := &bySubject{failing: map[string]bool{"u3@example.com": true}, calls: map[string]int{}}
	e, q, rec, att := executor(t, drv, clock, nil)
	if err := e.ExecuteBatch(context.Background(), "b1", batchOf(5), 1, false); err != nil {
		t.Fatalf("batch: %v", err)
	}
	if len(q.queued) != 1 {
		t.Fatalf("handed off %d jobs, want 1: %+v", len(q.queued), q.queued)
	}
	cont := q.queued[0]
	due := cont.NotBefore.Sub(now)
	if cont.Subject.Email != "u3@example.com" || !cont.Continues || due < 800*time.Millisecond || due > 1200*time.Millisecond {
		t.Fatalf("handed-off job %+v, want u3 continuing, due after the first backoff (1s, jittered)", cont)
	}
	if h := att[cont.attemptKey()]; len(h) != 1 || h[0].HTTPStatus != 503 {
		t.Fatalf("attempt log of the handed-off job: %+v", h)
	}
	succeeded := 0
	for _, r := range rec.recs {
		if r.Type == audit.TypeRevocationSucceeded {
			succeeded++
		}
	}
	if succeeded != 4 || len(rec.recs) != 5 {
		t.Fatalf("%d records, %d succeeded; want 5 and 4", len(rec.recs), succeeded)
	}

	// Delivered (for the first time, alone) before it is due: it waits and
	// spends no attempt; once due, it is its second attempt.
	drv.failing = nil
	payload, _ := json.Marshal(cont)
	msg := message.NewMessage("m1", payload)
	msg.SetContext(context.Background())
	var re *RetryError
	if err := e.Handler(msg); !errors.As(err, &re) || msg.Metadata.Get(bus.MetaRetryIn) == "" || drv.calls["u3@example.com"] != 1 {
		t.Fatalf("early delivery: %v (retry in %q, calls %d)", err, msg.Metadata.Get(bus.MetaRetryIn), drv.calls["u3@example.com"])
	}
	now = now.Add(2 * time.Second)
	msg = message.NewMessage("m1", payload)
	msg.SetContext(context.Background())
	if err := e.Handler(msg); err != nil {
		t.Fatalf("due delivery: %v", err)
	}
	for email, n := range drv.calls {
		if n != 1 && email != "u3@example.com" {
			t.Errorf("%s called %d times", email, n)
		}
	}
	last := rec.recs[len(rec.recs)-1]
	if last.Type != audit.TypeRevocationSucceeded || last.Attempt != 2 {
		t.Fatalf("continuing job ended %+v, want succeeded on attempt 2", last)
	}
	if _, ok := att[cont.attemptKey()]; ok {
		t.Error("the attempt log of the finished job was not cleared")
	}
}

// The target's concurrency holds across a batch: never more calls in flight.
func TestBatchKeepsTheTargetsConcurrency(t *testing.T) {
	now := time.Unix(1000, 0)
	gate := make(chan struct{})
	drv := &bySubject{calls: map[string]int{}, gate: gate}
	e, q, rec, _ := executor(t, drv, func() time.Time { return now }, func(tg *Target) { tg.Concurrency = 3 })
	done := make(chan error, 1)
	go func() { done <- e.ExecuteBatch(context.Background(), "b1", batchOf(20), 1, false) }()
	// Hold the first calls until as many as may run are running, then let
	// everything through: the most in flight must be exactly 3.
	for deadline := time.Now().Add(10 * time.Second); drv.in.Load() < 3; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls started", drv.in.Load())
		}
	}
	for range 20 {
		gate <- struct{}{}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := drv.max.Load(); m != 3 {
		t.Errorf("at most %d calls in flight, want 3 (the target's concurrency)", m)
	}
	if len(rec.recs) != 20 || len(q.queued) != 0 {
		t.Errorf("%d records, %d handed off; want 20 and 0", len(rec.recs), len(q.queued))
	}
}

// While the target is held (breaker open, Retry-After), a batch waits as a
// whole: nothing is called, nothing split off.
func TestHeldTargetHoldsTheBatch(t *testing.T) {
	now := time.Unix(1000, 0)
	drv := &bySubject{calls: map[string]int{}}
	e, q, _, _ := executor(t, drv, func() time.Time { return now }, nil)
	e.target.Breaker.Failure(time.Minute)
	var re *RetryError
	if err := e.ExecuteBatch(context.Background(), "b1", batchOf(4), 1, false); !errors.As(err, &re) || re.In < 50*time.Second {
		t.Fatalf("held batch: %v, want a wait of about a minute", err)
	}
	if len(drv.calls) != 0 || len(q.queued) != 0 {
		t.Fatalf("calls %v, handed off %d", drv.calls, len(q.queued))
	}
}

// Shutting down, a batch starts no more jobs: the ones not started leave as
// messages of their own, due at once, and the batch is done.
func TestStoppingBatchHandsOffTheRest(t *testing.T) {
	now := time.Unix(1000, 0)
	drv := &bySubject{calls: map[string]int{}}
	e, q, rec, _ := executor(t, drv, func() time.Time { return now }, nil)
	started := 0
	e.Stopping = func() bool { started++; return started > 2 }
	if err := e.ExecuteBatch(context.Background(), "b1", batchOf(5), 1, false); err != nil {
		t.Fatal(err)
	}
	if len(drv.calls) != 2 || len(rec.recs) != 2 {
		t.Fatalf("calls %v, %d records; want the 2 jobs started before the stop", drv.calls, len(rec.recs))
	}
	if len(q.queued) != 3 {
		t.Fatalf("handed off %d jobs, want 3", len(q.queued))
	}
	for _, j := range q.queued {
		if !j.Continues || !j.NotBefore.IsZero() || drv.calls[j.Subject.Email] != 0 {
			t.Errorf("handed-off job %+v", j)
		}
	}
}

type memProgress struct {
	mu      sync.Mutex
	done    map[string][]string
	loads   int
	saves   int
	deletes int
}

func (m *memProgress) Load(_ context.Context, b string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads++
	return m.done[b], nil
}
func (m *memProgress) Save(_ context.Context, b string, done []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done[b] = done
	m.saves++
	return nil
}
func (m *memProgress) Delete(_ context.Context, b string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.done, b)
	m.deletes++
	return nil
}

// A batch delivered again skips the jobs its earlier run saved as finished,
// and clears its progress when it ends.
func TestBatchDeliveredAgainSkipsFinishedJobs(t *testing.T) {
	now := time.Unix(1000, 0)
	drv := &bySubject{calls: map[string]int{}}
	e, _, rec, _ := executor(t, drv, func() time.Time { return now }, nil)
	jobs := batchOf(5)
	prog := &memProgress{done: map[string][]string{"b1": {jobs[0].ID, jobs[3].ID}}}
	e.Progress = prog
	if err := e.ExecuteBatch(context.Background(), "b1", jobs, 2, true); err != nil {
		t.Fatal(err)
	}
	if drv.calls["u0@example.com"] != 0 || drv.calls["u3@example.com"] != 0 || len(drv.calls) != 3 || len(rec.recs) != 3 {
		t.Fatalf("calls %v, %d records: the saved jobs were repeated or others skipped", drv.calls, len(rec.recs))
	}
	if _, ok := prog.done["b1"]; ok || prog.deletes != 1 {
		t.Errorf("progress not cleared at the end: %v (deletes %d)", prog.done, prog.deletes)
	}
}

// A batch delivered again finds its progress under the ID its header
// carries; one published before that header, under its message ID.
func TestBatchMessageKeysItsProgressByItsID(t *testing.T) {
	for _, c := range []struct{ header, uuid, key string }{
		{"batch/abc", "", "batch/abc"},
		{"", "batch/old", "batch/old"},
	} {
		now := time.Unix(1000, 0)
		drv := &bySubject{calls: map[string]int{}}
		e, _, _, _ := executor(t, drv, func() time.Time { return now }, nil)
		jobs := batchOf(3)
		e.Progress = &memProgress{done: map[string][]string{c.key: {jobs[0].ID}}}
		payload, _ := json.Marshal(Batch{Jobs: jobs})
		msg := message.NewMessage(c.uuid, payload)
		msg.SetContext(context.Background())
		msg.Metadata.Set(BatchHeader, "3")
		if c.header != "" {
			msg.Metadata.Set(BatchIDHeader, c.header)
		}
		msg.Metadata.Set(bus.MetaDelivered, "2")
		if err := e.Handler(msg); err != nil {
			t.Fatal(err)
		}
		if drv.calls["u0@example.com"] != 0 || len(drv.calls) != 2 {
			t.Errorf("header %q, message ID %q: calls %v, want the saved job skipped", c.header, c.uuid, drv.calls)
		}
	}
}

// A batch loads its saved progress only when it may have run before: stored
// in REVOKE before this process started (at or below Backlog), whatever
// its delivery count says, or delivered again. One stored since and
// delivered once runs every job without a lookup.
func TestOnlyBatchesFromBeforeTheStartLoadProgress(t *testing.T) {
	for _, c := range []struct {
		seq, delivered int
		load           bool
	}{
		{100, 1, true}, // the server lost its count in a crash
		{101, 1, false},
		{101, 2, true},
	} {
		now := time.Unix(1000, 0)
		drv := &bySubject{calls: map[string]int{}}
		e, _, _, _ := executor(t, drv, func() time.Time { return now }, nil)
		e.Backlog = 100
		jobs := batchOf(3)
		prog := &memProgress{done: map[string][]string{"batch/b": {jobs[0].ID}}}
		e.Progress = prog
		payload, _ := json.Marshal(Batch{Jobs: jobs})
		msg := message.NewMessage("m", payload)
		msg.SetContext(context.Background())
		msg.Metadata.Set(BatchHeader, "3")
		msg.Metadata.Set(BatchIDHeader, "batch/b")
		msg.Metadata.Set(bus.MetaDelivered, fmt.Sprint(c.delivered))
		msg.Metadata.Set(bus.MetaStreamSeq, fmt.Sprint(c.seq))
		if err := e.Handler(msg); err != nil {
			t.Fatal(err)
		}
		want := map[bool]int{true: 0, false: 1}[c.load]
		if (prog.loads == 1) != c.load || drv.calls["u0@example.com"] != want {
			t.Errorf("seq %d delivered %d: %d loads, saved job called %d times; want loaded %v", c.seq, c.delivered, prog.loads, drv.calls["u0@example.com"], c.load)
		}
	}
}

// While a batch runs, what finished is saved; a batch that ends without
// ever saving has nothing to clear.
func TestRunningBatchSavesItsProgress(t *testing.T) {
	defer func(d time.Duration) { progressEvery = d }(progressEvery)
	progressEvery = time.Millisecond
	now := time.Unix(1000, 0)
	gate := make(chan struct{})
	drv := &bySubject{calls: map[string]int{}, gate: gate}
	e, _, _, _ := executor(t, drv, func() time.Time { return now }, nil)
	prog := &memProgress{done: map[string][]string{}}
	e.Progress = prog
	done := make(chan error, 1)
	go func() { done <- e.ExecuteBatch(context.Background(), "b1", batchOf(3), 1, false) }()
	gate <- struct{}{} // the first job finishes; the second waits
	for deadline := time.Now().Add(10 * time.Second); ; runtime.Gosched() {
		prog.mu.Lock()
		saved := len(prog.done["b1"])
		prog.mu.Unlock()
		if saved == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the finished job was never saved")
		}
	}
	gate <- struct{}{}
	gate <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if prog.deletes != 1 || len(prog.done) != 0 {
		t.Errorf("progress %v, deletes %d; want cleared", prog.done, prog.deletes)
	}

	quick := &memProgress{done: map[string][]string{}}
	progressEvery = time.Hour
	e.Progress = quick
	go func() { done <- e.ExecuteBatch(context.Background(), "b2", batchOf(2), 1, false) }()
	gate <- struct{}{}
	gate <- struct{}{}
	if err := <-done; err != nil || quick.saves != 0 || quick.deletes != 0 {
		t.Errorf("a quick batch: err %v, %d saves, %d deletes; want none", err, quick.saves, quick.deletes)
	}
}

// failingQueue refuses every job.
type failingQueue struct{ memQueue }

func (*failingQueue) Enqueue(context.Context, []Job) error { return errors.New("stream away") }

// A batch whose hand-off fails is redelivered as a whole; without a
// progress log that is all it does (no panic), with one the jobs that
// finished are saved first, so the redelivery skips them.
func TestFailedHandOffRedeliversTheBatch(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, withProgress := range []bool{false, true} {
		drv := &bySubject{failing: map[string]bool{"u1@example.com": true}, calls: map[string]int{}}
		tg := &Target{Name: "as1", DriverName: "test", Driver: drv, Kinds: []events.Kind{events.KindDeprovisioned}, Concurrency: 1,
			Timeout: time.Second, MaxAttempts: 3, Backoff: []time.Duration{time.Second}, MaxRetryAfter: time.Hour}
		e, err := NewExecutor(tg, &failingQueue{}, &memRecorder{}, memAttempts{}, func() time.Time { return now }, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		prog := &memProgress{done: map[string][]string{}}
		if withProgress {
			e.Progress = prog
		}
		if err := e.ExecuteBatch(context.Background(), "b1", batchOf(3), 1, false); err == nil {
			t.Fatalf("progress %v: the failed hand-off was not reported", withProgress)
		}
		if withProgress && len(prog.done["b1"]) != 2 {
			t.Errorf("saved %v, want the 2 finished jobs", prog.done["b1"])
		}
	}
}

// A REVOKE message that does not decode — as a batch or as one job — is
// dead-lettered with its bytes and on record, never dropped, and nothing is
// sent for it.
func TestUndecodableMessagesAreDeadLettered(t *testing.T) {
	for _, c := range []struct {
		name    string
		payload string
		batch   bool
	}{
		{"batch", `{"jobs":[{"id":"e|as1","event_id":"e"},]}`, true},
		{"batch of a job with trailing bytes", `{"jobs":[]}x`, true},
		{"job", `{"id":"e|as1","event_id":`, false},
		{"job as a list", `[1,2]`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			drv := &bySubject{calls: map[string]int{}}
			e, q, rec, _ := executor(t, drv, time.Now, nil)
			msg := message.NewMessage("m1", []byte(c.payload))
			if c.batch {
				msg.Metadata.Set(BatchHeader, "1")
			}
			msg.SetContext(context.Background())
			if err := e.Handler(msg); err != nil {
				t.Fatalf("handler: %v", err)
			}
			if len(q.dead) != 1 || q.dead[0].Job.Cause != c.payload || !strings.HasPrefix(q.dead[0].Reason, "undecodable") {
				t.Fatalf("dead letters %+v, want one keeping the bytes", q.dead)
			}
			if len(rec.recs) != 1 || rec.recs[0].Type != audit.TypeRevocationDeadLettered || len(drv.calls) != 0 {
				t.Fatalf("records %+v, calls %v", rec.recs, drv.calls)
			}
		})
	}
}
