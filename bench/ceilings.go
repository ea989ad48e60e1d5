package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus/stores"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr"
)

// Ceiling is what one part underneath can do alone, on this machine, now.
type Ceiling struct {
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`
	PerS    float64 `json:"per_s"`
	// TimeToRevokeMS, for (a), (d) and (f): when each request was answered
	// (and, for (d) and (f), its record durable), counted from when its
	// user was handed over (releaseAt).
	TimeToRevokeMS *Quantile `json:"time_to_revoke_ms,omitempty"`
	// For (d) and (f), each run in a process of its own like the worker:
	// what that process took.
	Usage
	// WorkerHookMS, for (e): the hook's answer time at the worker.
	WorkerHookMS *WorkerHook `json:"worker_hook_ms,omitempty"`
}

func ceiling(n int, d time.Duration) Ceiling {
	return Ceiling{Count: n, Seconds: d.Seconds(), PerS: float64(n) / d.Seconds()}
}

// ceilingHTTP sends the same N×K GTR requests straight to the same
// receivers, with the same per-target concurrency and JWT signing (our gtr
// driver, our key), and nothing else.
func ceilingHTTP(ctx context.Context, s Scenario, dir string, receivers *receiverSet) (Ceiling, error) {
	return sendDirect(ctx, s, dir, receivers, direct{})
}

// direct is what a floor adds to (a)'s requests.
type direct struct {
	// begin, if set, runs when the clock starts.
	begin func(start time.Time)
	// answered, if set, runs after each answer in the sending goroutine
	// and counts toward its time.
	answered func(target, user int) error
	// feed, if set, hands target k's users to its senders (each once) and
	// returns when it has handed over all. Unset, each user is handed over
	// at its releaseAt.
	feed func(ctx context.Context, k int, users chan<- int) error
}

// sendDirect is (a), and the floors built on it.
func sendDirect(ctx context.Context, s Scenario, dir string, receivers *receiverSet, add direct) (Ceiling, error) {
	signer, err := keys.LoadOrCreate(filepath.Join(dir, "ceiling-key.pem"))
	if err != nil {
		return Ceiling{}, err
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(signer.JWKS()) }))
	defer jwks.Close()
	if err := receivers.SetJWKSURL(jwks.URL); err != nil {
		return Ceiling{}, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	client := &http.Client{Transport: transport}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	times := make([]float64, 0, s.Users*s.Targets)
	start := time.Now()
	if add.begin != nil {
		add.begin(start)
	}
	release := func(u int) time.Time { return releaseAt(s, start, u) }
	for k, url := range receivers.URLs {
		d, err := gtr.New(gtr.Config{Endpoint: url, SubjectFormat: "email", Auth: "signed_jwt", Signer: signer,
			Issuer: publicURL, ClientID: "lifecycle-worker", Client: client, Now: time.Now})
		if err != nil {
			return Ceiling{}, err
		}
		users := make(chan int)
		for range s.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for u := range users {
					job := revoke.Job{Subject: events.Subject{Email: fmt.Sprintf("ceiling%07d@example.com", u)}}
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					res := d.Revoke(cctx, job)
					cancel()
					var err error
					if add.answered != nil {
						err = add.answered(k, u)
					}
					at := float64(time.Since(release(u)).Microseconds()) / 1000
					mu.Lock()
					times = append(times, at)
					if res.Class != revoke.Succeeded && firstErr == nil {
						firstErr = fmt.Errorf("ceiling request: %s %v", res.Class, res.Err)
					}
					if err != nil && firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}()
		}
		go func() {
			defer close(users)
			if add.feed != nil {
				if err := add.feed(ctx, k, users); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
				return
			}
			for u := range s.Users {
				time.Sleep(time.Until(release(u)))
				users <- u
			}
		}()
	}
	wg.Wait()
	c := ceiling(s.Users*s.Targets, time.Since(start))
	q := quantiles(times)
	c.TimeToRevokeMS = &q
	return c, firstErr
}

// releaseAt is when (a) hands user u over: all at once, or paced like the
// hook deliveries (s.Batch users every 1/s.Rate s), so that a paced run's
// time to revoke has a floor of its own. Either way it is counted from
// there to the answer.
func releaseAt(s Scenario, start time.Time, u int) time.Time {
	if s.Rate <= 0 {
		return start
	}
	return start.Add(time.Duration(float64(u/max(s.Batch, 1)) / s.Rate * float64(time.Second)))
}

// jobSize is the size of one REVOKE message as the planner writes it.
func jobSize() int {
	b, _ := json.Marshal(revoke.Job{ID: "okta:bench-0000001|as1", EventID: "okta:bench-0000001", Target: "as1",
		Kind: events.KindDeprovisioned, Source: events.SourceOktaHook, Cause: "user.lifecycle.deactivate",
		Subject:    events.Subject{Issuer: "https://acme.okta.com", ID: "00u0000001", Login: "user0000001@example.com", Email: "user0000001@example.com"},
		OccurredAt: time.Now(), ReceivedAt: time.Now(), PlannedAt: time.Now()})
	return len(b)
}

// ceilingJetStream publishes N×K messages of a job's size to a file stream
// on an embedded server (async, with message IDs) and consumes them with a
// pull consumer, acking each.
func ceilingJetStream(ctx context.Context, n int, dir string) (Ceiling, error) {
	b, err := bus.Open(ctx, bus.Config{Embedded: true, StoreDir: filepath.Join(dir, "ceiling-nats"), Name: "ceiling"}, slog.New(slog.DiscardHandler))
	if err != nil {
		return Ceiling{}, err
	}
	defer b.Close()
	js := b.JetStream()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CEILING", Subjects: []string{"ceiling.>"}, Storage: jetstream.FileStorage}); err != nil {
		return Ceiling{}, err
	}
	payload := []byte(strings.Repeat("x", jobSize()))
	start := time.Now()
	for i := 0; i < n; i += 1000 {
		futures := make([]jetstream.PubAckFuture, 0, 1000)
		for j := i; j < min(i+1000, n); j++ {
			f, err := js.PublishAsync("ceiling.t", payload, jetstream.WithMsgID(fmt.Sprint("m", j)))
			if err != nil {
				return Ceiling{}, err
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return Ceiling{}, err
			}
		}
	}
	cons, err := js.CreateConsumer(ctx, "CEILING", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return Ceiling{}, err
	}
	done := make(chan struct{})
	var got int
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		got++
		if got == n {
			close(done)
		}
	})
	if err != nil {
		return Ceiling{}, err
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		return Ceiling{}, fmt.Errorf("consumed %d of %d", got, n)
	}
	return ceiling(n, time.Since(start)), nil
}

// ceilingSQLite inserts rows like the audit index's (its own schema and
// indexes, a body of typical size) in batched transactions of 500 on a
// fresh WAL database: the write path without hashing or JSON.
func ceilingSQLite(ctx context.Context, s Scenario, rows int, dir string) (Ceiling, error) {
	path := filepath.Join(dir, "ceiling.db")
	// The index's own schema (the store migrates a new file), so the
	// ceiling pays for the same indexes as the pipeline's writer.
	store, err := audit.OpenStore(ctx, path)
	if err != nil {
		return Ceiling{}, err
	}
	if err := store.Close(); err != nil {
		return Ceiling{}, err
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000&_txlock=immediate")
	if err != nil {
		return Ceiling{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	body := []byte(strings.Repeat("b", 520))
	hash := make([]byte, 32)
	now := time.Now().UnixMilli()
	start := time.Now()
	for i := 0; i < rows; i += 500 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return Ceiling{}, err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO records (seq, id, time_ms, type, event_id, source, kind, subject_id, subject_login,
			subject_email, target, outcome, indexed_ms, body, prev_hash, hash, duplicate_of, stream_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`)
		if err != nil {
			return Ceiling{}, err
		}
		keys, err := tx.PrepareContext(ctx, `INSERT INTO subject_keys (key, event_id, seq) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)`)
		if err != nil {
			return Ceiling{}, err
		}
		for j := i; j < min(i+500, rows); j++ {
			u := s.subject(j / 4)
			email, event, id := fmt.Sprintf("user%07d@example.com", u), fmt.Sprint("okta:bench-", u), fmt.Sprint("00u", u)
			if _, err := stmt.ExecContext(ctx, j+1, fmt.Sprint("r", j), now+int64(j), "revocation.attempted", event,
				"okta-hook", "deprovisioned", id, email, email, fmt.Sprint("as", j%10), "succeeded", now, body, hash, hash, j+1); err != nil {
				return Ceiling{}, err
			}
			if j%4 == 0 { // an event's first row: its subject's keys (docs/decisions/0019)
				if _, err := keys.ExecContext(ctx, "e:"+email, event, j+1, "l:"+email, event, j+1, "i:"+id, event, j+1); err != nil {
					return Ceiling{}, err
				}
			}
		}
		stmt.Close()
		keys.Close()
		if err := tx.Commit(); err != nil {
			return Ceiling{}, err
		}
	}
	return ceiling(rows, time.Since(start)), nil
}

// floorEnv starts the bench binary as the floor (d)'s own process: like the
// worker, it has its own heap, embedded server and index, so that its peak
// RSS and CPU are a floor for the worker's too. It reads a floorRun on
// stdin and writes the Ceiling on stdout.
const floorEnv = "LW_BENCH_FLOOR"

type floorRun struct {
	// Floor is "d" or "f".
	Floor    string   `json:"floor"`
	Scenario Scenario `json:"scenario"`
	Dir      string   `json:"dir"`
	Control  string   `json:"control"`
	URLs     []string `json:"urls"`
	// CPUProfile, when set (-pprof), is where the floor writes a CPU
	// profile of its whole run, to compare with the worker's.
	CPUProfile string `json:"cpu_profile,omitempty"`
}

// runFloor measures floor (d), or (f) (the guarantees plainly), in a child
// process with the worker's environment (-worker-env applies to both).
func runFloor(ctx context.Context, floor string, s Scenario, dir string, receivers *receiverSet) (Ceiling, error) {
	exe, err := os.Executable()
	if err != nil {
		return Ceiling{}, err
	}
	run := floorRun{Floor: floor, Scenario: s, Dir: dir, Control: receivers.control, URLs: receivers.URLs}
	if pprofAddr != "" {
		run.CPUProfile = filepath.Join(dir, map[string]string{"d": "floor-cpu.pprof", "f": "plainly-cpu.pprof"}[floor])
	}
	in, err := json.Marshal(run)
	if err != nil {
		return Ceiling{}, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(append(os.Environ(), floorEnv+"=1"), workerEnv...)
	cmd.Stdin, cmd.Stderr = bytes.NewReader(in), os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return Ceiling{}, fmt.Errorf("(%s)'s process: %w", floor, err)
	}
	var c Ceiling
	if err := json.Unmarshal(out, &c); err != nil {
		return Ceiling{}, fmt.Errorf("(%s)'s process answered %q: %w", floor, out, err)
	}
	return c, nil
}

// serveFloor is a floor's process: it runs (d) or (f) and reports it with
// its own peak RSS and CPU.
func serveFloor() error {
	var run floorRun
	if err := json.NewDecoder(os.Stdin).Decode(&run); err != nil {
		return err
	}
	receivers := &receiverSet{control: run.Control, URLs: run.URLs, client: &http.Client{Timeout: 10 * time.Second}}
	if run.CPUProfile != "" {
		f, err := os.Create(run.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	measure := ceilingFloor
	if run.Floor == "f" {
		measure = guaranteesPlainly
	}
	c, err := measure(context.Background(), run.Scenario, run.Dir, receivers)
	pprof.StopCPUProfile() // a no-op when not profiling
	if err != nil {
		return err
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return err
	}
	c.PeakRSSMB = float64(ru.Maxrss) / 1024 // KiB on Linux
	_, _, c.RSSFileMB = procStats(os.Getpid())
	c.CPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	return json.NewEncoder(os.Stdout).Encode(c)
}

// ceilingFloor is (a) plus the least our guarantees add to each request:
// one audit record of the worker's shape, made durable in an AUDIT stream
// before the request counts as done — written as the worker writes its
// records, through its Sink and group commit (decision 0017) — and indexed
// by the worker's own indexer into an audit index (hash chain, the same
// schema). Everything the pipeline does beyond that (intake, the durable
// job, planning, the plan's records) is not in it: the pipeline cannot
// reach this floor, only approach it.
func ceilingFloor(ctx context.Context, s Scenario, dir string, receivers *receiverSet) (Ceiling, error) {
	b, err := bus.Open(ctx, bus.Config{Embedded: true, StoreDir: filepath.Join(dir, "floor-nats"), Name: "floor"}, slog.New(slog.DiscardHandler))
	if err != nil {
		return Ceiling{}, err
	}
	defer b.Close()
	pub, err := b.NewPublisher("floor", 1)
	if err != nil {
		return Ceiling{}, err
	}
	defer pub.Close()
	ix, stop, err := startIndex(ctx, b.JetStream(), filepath.Join(dir, "floor.db"), bus.StreamAudit)
	if err != nil {
		return Ceiling{}, err
	}
	defer stop()

	received := time.Now()
	rec := &audit.Group{Next: stores.Sink{Pub: pub}}
	record := func(target, user int) error {
		return rec.Record(ctx, requestRecord(target, s.subject(user), received))
	}
	start := time.Now()
	c, err := sendDirect(ctx, s, dir, receivers, direct{answered: record})
	if err != nil {
		return Ceiling{}, err
	}
	want := uint64(s.Users * s.Targets)
	for deadline := time.Now().Add(5 * time.Minute); ix.Records() < want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return Ceiling{}, fmt.Errorf("floor: indexed %d of %d", ix.Records(), want)
		}
	}
	end := ceiling(int(want), time.Since(start))
	end.TimeToRevokeMS = c.TimeToRevokeMS
	return end, nil
}

// startIndex runs the worker's audit indexer over stream into a fresh
// index at path; stop ends it and closes the index.
func startIndex(ctx context.Context, js jetstream.JetStream, path, stream string) (ix *audit.Indexer, stop func(), err error) {
	store, err := audit.OpenStore(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	ix, err = audit.NewIndexer(js, store, audit.IndexerConfig{Stream: stream}, slog.New(slog.DiscardHandler))
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	ixCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ix.Run(ixCtx) }()
	return ix, func() { cancel(); <-done; store.Close() }, nil
}

// requestRecord is the record floors (d) and (f) keep of a request: the
// worker's revocation.succeeded record for it; n is the user's subject
// number (Scenario.subject).
func requestRecord(target, n int, received time.Time) audit.Record {
	now := time.Now().UTC()
	ev := fmt.Sprintf("okta:bench-%07d", n)
	occurred := now
	return audit.Record{ID: fmt.Sprintf("%s|as%d/succeeded", ev, target), Time: now, Type: audit.TypeRevocationSucceeded, EventID: ev,
		Source: string(events.SourceOktaHook), Kind: string(events.KindDeprovisioned), Target: fmt.Sprint("as", target),
		Subject: &audit.Subject{ID: fmt.Sprintf("00u%07d", n), Login: fmt.Sprintf("user%07d@example.com", n), Email: fmt.Sprintf("user%07d@example.com", n)},
		Driver:  "gtr", Attempt: 1, Outcome: "succeeded", HTTPStatus: 204, LatencyMS: 3, OccurredAt: &occurred,
		Detail: audit.Detail(map[string]any{"time_to_revoke_ms": now.Sub(received).Milliseconds(), "exposed_until": now.Add(time.Hour)})}
}

// floorIntake is (e): the same deliveries, sent the same way, to the same
// worker binary configured with no targets. The worker takes every event
// durably and records it, as in the pipeline run, but has nothing to
// revoke: its hook answer time is what answering these deliveries costs on
// this machine with no revocation competing — the floor of the hook's
// answer under load. bin is the worker runPipeline built.
func floorIntake(ctx context.Context, s Scenario, bin, dir string) (Ceiling, error) {
	dir = filepath.Join(dir, "intake-floor")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Ceiling{}, err
	}
	w, err := startWorker(ctx, bin, dir, &receiverSet{}, s, nil)
	if err != nil {
		return Ceiling{}, err
	}
	defer w.stop()
	bodies := deliveries(s)
	start := time.Now()
	if _, err := sendHooks(ctx, w.url, bodies, s.Senders, s.Rate); err != nil {
		return Ceiling{}, err
	}
	c := ceiling(len(bodies), time.Since(start))
	h, err := workerHookTimes(w.url)
	if err != nil {
		return Ceiling{}, err
	}
	c.WorkerHookMS = &h
	return c, nil
}
