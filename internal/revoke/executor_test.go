package revoke

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

type scripted struct {
	mu    sync.Mutex
	calls int
	res   []Result
}

func (s *scripted) Revoke(context.Context, Job) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.res[min(s.calls, len(s.res))-1]
}

type memQueue struct {
	mu     sync.Mutex
	queued []Job
	dead   []DeadLetter
}

func (q *memQueue) Enqueue(_ context.Context, jobs []Job) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.queued = append(q.queued, jobs...)
	return nil
}
func (q *memQueue) DeadLetter(_ context.Context, dl DeadLetter) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dead = append(q.dead, dl)
	return nil
}

type memRecorder struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (m *memRecorder) Record(_ context.Context, recs ...audit.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, recs...)
	return nil
}

type memAttempts map[string][]Attempt

// memAttemptsMu guards every memAttempts: a batch's jobs use it at once.
var memAttemptsMu sync.Mutex

func (m memAttempts) Load(_ context.Context, k string) ([]Attempt, error) {
	memAttemptsMu.Lock()
	defer memAttemptsMu.Unlock()
	return m[k], nil
}
func (m memAttempts) Save(_ context.Context, k string, a []Attempt) error {
	memAttemptsMu.Lock()
	defer memAttemptsMu.Unlock()
	m[k] = a
	return nil
}
func (m memAttempts) Delete(_ context.Context, k string) error {
	memAttemptsMu.Lock()
	defer memAttemptsMu.Unlock()
	delete(m, k)
	return nil
}

func executor(t *testing.T, drv Driver, now func() time.Time, mod func(*Target)) (*Executor, *memQueue, *memRecorder, memAttempts) {
	t.Helper()
	tg := &Target{Name: "as1", DriverName: "test", Driver: drv, Kinds: []events.Kind{events.KindDeprovisioned}, Concurrency: 1,
		Timeout: time.Second, MaxAttempts: 3, Backoff: []time.Duration{time.Second, time.Minute},
		Breaker: &Breaker{Failures: 100, Cooldown: time.Second, MaxCooldown: time.Minute, Now: now}, MaxRetryAfter: time.Hour}
	if mod != nil {
		mod(tg)
	}
	q, rec, att := &memQueue{}, &memRecorder{}, memAttempts{}
	e, err := NewExecutor(tg, q, rec, att, now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return e, q, rec, att
}

var job = Job{ID: "okta:1|as1", EventID: "okta:1", Target: "as1", Kind: events.KindDeprovisioned, Subject: events.Subject{Email: "a@example.com"}}

// A Retry-After holds the whole target: the job comes back no sooner, and
// while it runs, other jobs wait without spending attempts.
func TestRetryAfterHoldsTheTarget(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	drv := &scripted{res: []Result{{Class: Retry, HTTPStatus: 429, RetryAfter: 90 * time.Second}, {Class: Succeeded, HTTPStatus: 204}}}
	e, _, rec, att := executor(t, drv, clock, nil)
	var re *RetryError
	if err := e.Execute(context.Background(), job, 1); !errors.As(err, &re) || re.In < 80*time.Second {
		t.Fatalf("first attempt: %v, want a retry no sooner than Retry-After", err)
	}
	other := job
	other.ID = "okta:2|as1"
	if err := e.Execute(context.Background(), other, 1); !errors.As(err, &re) || drv.calls != 1 {
		t.Fatalf("another job called the target during Retry-After (calls %d): %v", drv.calls, err)
	}
	if len(att[other.attemptKey()]) != 0 {
		t.Error("waiting spent an attempt")
	}
	now = now.Add(91 * time.Second)
	if err := e.Execute(context.Background(), job, 2); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
	last := rec.recs[len(rec.recs)-1]
	if last.Type != audit.TypeRevocationSucceeded || last.Attempt != 2 {
		t.Errorf("end record %+v, want succeeded on attempt 2", last)
	}
}

// Deliveries are not attempts: a job redelivered after waits (and crashes)
// is dead-lettered after max_attempts real attempts, with their history.
func TestAttemptsAreCountedNotDeliveries(t *testing.T) {
	now := time.Unix(1000, 0)
	drv := &scripted{res: []Result{{Class: Retry, HTTPStatus: 503, Err: errors.New("HTTP 503")}}}
	e, q, _, _ := executor(t, drv, func() time.Time { return now }, nil)
	for delivered := 1; delivered <= 7; delivered += 3 { // deliveries 1, 4, 7: three attempts
		_ = e.Execute(context.Background(), job, delivered)
		now = now.Add(2 * time.Minute) // each after its backoff
	}
	if drv.calls != 3 || len(q.dead) != 1 || len(q.dead[0].History) != 3 || q.dead[0].Attempts != 3 || q.dead[0].History[2].HTTPStatus != 503 {
		t.Fatalf("calls %d, dead letters %+v", drv.calls, q.dead)
	}
}

// The wait an attempt sets is kept with its attempts: a job delivered again
// before it is over — the server's redelivery delay lost with a restart, as
// a consumer whose state is in memory loses it (decision 0020) — waits the
// rest without calling the target or spending an attempt, and runs once due.
func TestWaitsOutliveTheRedeliveryDelay(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	drv := &scripted{res: []Result{{Class: Retry, HTTPStatus: 429, RetryAfter: 10 * time.Minute}, {Class: Succeeded, HTTPStatus: 204}}}
	e, _, rec, att := executor(t, drv, clock, nil)
	var re *RetryError
	if err := e.Execute(context.Background(), job, 1); !errors.As(err, &re) || re.In < 9*time.Minute {
		t.Fatalf("first attempt: %v, want a retry after Retry-After", err)
	}
	// A restart: a new executor (its breaker knows nothing), the same log.
	e, _, rec2, _ := executor(t, drv, clock, nil)
	e.attempts = att
	now = now.Add(time.Minute)
	if err := e.Execute(context.Background(), job, 2); !errors.As(err, &re) || re.In < 8*time.Minute || re.In > 10*time.Minute {
		t.Fatalf("delivered again a minute later: %v, want the rest of the wait", err)
	}
	if drv.calls != 1 || len(rec2.recs) != 0 || len(att[job.attemptKey()]) != 1 {
		t.Fatalf("the early delivery called the target %d times, wrote %d records, left %d attempts; want 1, 0, 1",
			drv.calls, len(rec2.recs), len(att[job.attemptKey()]))
	}
	now = now.Add(10 * time.Minute)
	if err := e.Execute(context.Background(), job, 2); err != nil {
		t.Fatalf("once due: %v", err)
	}
	if last := rec2.recs[len(rec2.recs)-1]; last.Type != audit.TypeRevocationSucceeded || last.Attempt != 2 || len(rec.recs) != 1 {
		t.Errorf("end record %+v, want succeeded on attempt 2", last)
	}

	// A due time no attempt could have set (a day off, when the longest
	// wait is an hour's Retry-After) does not hold the job.
	other := job
	other.ID = "okta:2|as1"
	att[other.attemptKey()] = []Attempt{{N: 1, At: now, Outcome: "retry", Due: now.Add(24 * time.Hour)}}
	if err := e.Execute(context.Background(), other, 2); err != nil || drv.calls != 3 {
		t.Fatalf("a job with a forged due time: %v (calls %d), want it attempted", err, drv.calls)
	}
}

// A rate limit is waited on before the call; a job that cannot get a slot
// before its context ends is retried, not called.
func TestRateLimit(t *testing.T) {
	drv := &scripted{res: []Result{{Class: Succeeded, HTTPStatus: 204}}}
	e, _, _, _ := executor(t, drv, time.Now, func(tg *Target) { tg.Limiter = rate.NewLimiter(rate.Every(time.Hour), 1) })
	if err := e.Execute(context.Background(), job, 1); err != nil || drv.calls != 1 {
		t.Fatalf("first call within the burst: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Execute(ctx, job, 1); err == nil || drv.calls != 1 {
		t.Fatalf("a second call within the hour went through (calls %d, err %v)", drv.calls, err)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		v    string
		want time.Duration
	}{
		{"120", 2 * time.Minute},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{"86400", time.Hour}, // capped
		{"soon", 0},
		{"", 0},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		h := http.Header{}
		if c.v != "" {
			h.Set("Retry-After", c.v)
		}
		if got := RetryAfter(h, now, time.Hour); got != c.want {
			t.Errorf("Retry-After %q: %s, want %s", c.v, got, c.want)
		}
	}
}

type memConfirm struct{ expected []Awaiting }

func (m *memConfirm) Expect(_ context.Context, a Awaiting) error {
	m.expected = append(m.expected, a)
	return nil
}
func (m *memConfirm) Take(context.Context, string, events.Subject) (*Awaiting, error) {
	return nil, nil
}

// A target that promises signed confirmations: a success is recorded with
// the confirmation's deadline and the revocation is left awaiting it.
func TestSuccessAwaitsAPromisedConfirmation(t *testing.T) {
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	confirm := &memConfirm{}
	e, _, rec, _ := executor(t, &scripted{res: []Result{{Class: Succeeded, HTTPStatus: 204}}}, func() time.Time { return now }, func(tg *Target) {
		tg.ConfirmWindow, tg.Confirmations = time.Hour, confirm
	})
	job := Job{ID: "okta:1|as1", EventID: "okta:1", Target: "as1", Kind: events.KindDeprovisioned, Subject: events.Subject{Email: "a@x"}, ReceivedAt: now}
	if err := e.Execute(context.Background(), job, 1); err != nil {
		t.Fatal(err)
	}
	if len(confirm.expected) != 1 || confirm.expected[0].EventID != "okta:1" || !confirm.expected[0].Deadline.Equal(now.Add(time.Hour)) {
		t.Fatalf("awaiting %+v", confirm.expected)
	}
	if len(rec.recs) != 1 || !strings.Contains(string(rec.recs[0].Detail), `"confirmation_expected_by":"2026-11-30T11:00:00Z"`) {
		t.Errorf("record %+v", rec.recs)
	}
	if len(ConfirmKeys("as1", events.Subject{Email: "A@X", Issuer: "https://i", ID: "00u1"})) != 3 ||
		ConfirmKeys("as1", events.Subject{Email: "A@X"})[0] != ConfirmKeys("as1", events.Subject{Email: "a@x"})[0] {
		t.Error("confirm keys: one per identifier, emails case-insensitive")
	}
}
