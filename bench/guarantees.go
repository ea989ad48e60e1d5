package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus/stores"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/packed"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// guaranteesPlainly is (f), the pipeline's guarantees done plainly: (d) plus
// the rest of what the pipeline promises, each step done once and in the
// most direct way, on the worker's own streams with the worker's own
// encodings (stores.Sink, the audit indexer):
//
//   - intake: when a delivery is due (releaseAt), its events are mapped
//     from the Okta LogEvents (events.MapOktaLogEvent) and made durable in
//     LIFECYCLE, deduplicated by event ID, with one record each on AUDIT
//     (the receipt): what must hold before the IdP is answered;
//   - jobs: the delivery's jobs are made durable as one REVOKE message per
//     target (revoke.Batch, the planner's largest grouping for a delivery);
//   - revocation: per target, one pull consumer hands each batch's jobs to
//     (a)'s senders; each request's record is made durable on AUDIT after
//     its answer, as in (d), and the batch is acked once all of its jobs
//     are on record; the index takes every record.
//
// What it leaves out is the pipeline's machinery: no planner (one record
// per event, not two; no marks), no attempt log, progress, retries,
// breaker, Watermill or metrics, no HTTP intake (floor (e) has that). It is
// not a floor: the pipeline's group commits and paced planning can beat
// it. It says what the guarantees cost when kept without the machinery,
// which is what the pipeline's own costs are measured against. Its time to
// revoke is counted from each delivery's due time, like (a)'s.
func guaranteesPlainly(ctx context.Context, s Scenario, dir string, receivers *receiverSet) (Ceiling, error) {
	b, err := bus.Open(ctx, bus.Config{Embedded: true, StoreDir: filepath.Join(dir, "plainly-nats"), Name: "plainly"}, slog.New(slog.DiscardHandler))
	if err != nil {
		return Ceiling{}, err
	}
	defer b.Close()
	pub, err := b.NewPublisher("plainly", 1)
	if err != nil {
		return Ceiling{}, err
	}
	defer pub.Close()
	sink := stores.Sink{Pub: pub}
	ix, stop, err := startIndex(ctx, b.JetStream(), filepath.Join(dir, "plainly.db"), bus.StreamAudit)
	if err != nil {
		return Ceiling{}, err
	}
	defer stop()

	// An intake that fails ends the consumers too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	started := time.Now()
	g := &guarantees{s: s, sink: sink, js: b.JetStream(), targets: len(receivers.URLs), received: started,
		pending: make([]map[int]*batchAck, len(receivers.URLs))}
	for k := range g.pending {
		g.pending[k] = map[int]*batchAck{}
	}
	var intake sync.WaitGroup
	var intakeErr error
	c, err := sendDirect(ctx, s, dir, receivers, direct{
		begin: func(start time.Time) {
			intake.Add(1)
			go func() {
				defer intake.Done()
				if intakeErr = g.intake(ctx, start); intakeErr != nil {
					cancel()
				}
			}()
		},
		feed:     g.feed,
		answered: g.answered,
	})
	intake.Wait()
	if err = errors.Join(err, intakeErr); err != nil {
		return Ceiling{}, err
	}
	want := uint64(s.Users*s.Targets + s.Users)
	for deadline := time.Now().Add(5 * time.Minute); ix.Records() < want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return Ceiling{}, fmt.Errorf("(f): indexed %d of %d", ix.Records(), want)
		}
	}
	end := ceiling(s.Users*s.Targets, time.Since(started))
	end.TimeToRevokeMS = c.TimeToRevokeMS
	// Every batch acked: the work queue is empty once the acks are in.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		st, err := b.JetStream().Stream(ctx, bus.StreamRevoke)
		if err != nil {
			return Ceiling{}, err
		}
		if st.CachedInfo().State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			return Ceiling{}, fmt.Errorf("(f): %d REVOKE messages never acked", st.CachedInfo().State.Msgs)
		}
	}
	return end, nil
}

// guarantees is (f)'s state.
type guarantees struct {
	s        Scenario
	sink     stores.Sink
	js       jetstream.JetStream
	targets  int
	received time.Time // for the records' detail, as (d)'s
	// pending[k][user] is the batch that carried user's job for target k.
	mu      sync.Mutex
	pending []map[int]*batchAck
}

// batchAck acks a REVOKE message once each of its jobs is on record.
type batchAck struct {
	left int
	msg  jetstream.Msg
}

// intake takes the deliveries as the hook would, Senders at a time, each
// when it is due.
func (g *guarantees) intake(ctx context.Context, start time.Time) error {
	bodies := deliveries(g.s)
	next := make(chan int)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range max(g.s.Senders, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := g.deliver(ctx, bodies[i]); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range bodies {
		time.Sleep(time.Until(releaseAt(g.s, start, i*g.s.Batch)))
		next <- i
	}
	close(next)
	wg.Wait()
	return firstErr
}

// deliver is one delivery: its events and their receipts durable, then its
// jobs, one message per target.
func (g *guarantees) deliver(ctx context.Context, body []byte) error {
	var d struct {
		Data struct {
			Events []json.RawMessage `json:"events"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		return err
	}
	now := time.Now().UTC()
	evs := make([]events.Event, 0, len(d.Data.Events))
	recs := make([]audit.Record, 0, len(d.Data.Events))
	for _, raw := range d.Data.Events {
		ev, reason, err := events.MapOktaLogEvent(raw, events.SourceOktaHook, "https://acme.okta.com", now, events.DefaultOktaMapping())
		if err != nil || reason != "" {
			return fmt.Errorf("(f): event not mapped: %v %s", err, reason)
		}
		evs = append(evs, ev)
		occurred := ev.OccurredAt
		recs = append(recs, audit.Record{ID: ev.ID + "/received", Time: now, Type: audit.TypeEventReceived, EventID: ev.ID,
			Source: string(ev.Source), Kind: string(ev.Kind), Subject: audit.SubjectOf(ev.Subject), Outcome: "accepted", OccurredAt: &occurred,
			Detail: audit.Detail(map[string]any{"event_type": ev.Cause, "received_at": ev.ReceivedAt})})
	}
	if _, err := g.sink.PublishEvents(ctx, evs); err != nil {
		return err
	}
	if err := g.sink.Record(ctx, recs...); err != nil {
		return err
	}
	jobs := make([]revoke.Job, 0, len(evs)*g.targets)
	for k := range g.targets {
		target := fmt.Sprint("as", k)
		for _, ev := range evs {
			jobs = append(jobs, revoke.Job{ID: revoke.JobID(ev.ID, target), EventID: ev.ID, Target: target, Kind: ev.Kind, Source: ev.Source,
				Cause: ev.Cause, Subject: ev.Subject, Scope: ev.Scope, OccurredAt: ev.OccurredAt, ReceivedAt: ev.ReceivedAt, PlannedAt: now})
		}
	}
	return g.sink.Enqueue(ctx, jobs)
}

// feed consumes target k's REVOKE subject and hands each job's user to the
// senders, until all of them have been.
func (g *guarantees) feed(ctx context.Context, k int, users chan<- int) error {
	cons, err := g.js.CreateConsumer(ctx, bus.StreamRevoke, jetstream.ConsumerConfig{Durable: fmt.Sprint("plainly-as", k),
		FilterSubject: revoke.Topic(fmt.Sprint("as", k)), AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 64,
		// Longer than the 64 batches held may wait for the senders, so
		// that none is delivered twice.
		AckWait: 5 * time.Minute})
	if err != nil {
		return err
	}
	msgs, err := cons.Messages()
	if err != nil {
		return err
	}
	defer msgs.Stop()
	go func() { <-ctx.Done(); msgs.Stop() }() // ends Next when the intake fails
	for fed := 0; fed < g.s.Users; {
		m, err := msgs.Next()
		if err != nil {
			return err
		}
		// A batch (revoke.BatchHeader), or one job when its group had one;
		// read as the executor reads them.
		var batch revoke.Batch
		if count := m.Headers().Get(revoke.BatchHeader); count != "" {
			n, _ := strconv.Atoi(count)
			var data []byte
			if data, err = packed.Unpack(m.Data(), m.Headers().Values(packed.EncodingHeader)); err == nil {
				batch, err = revoke.DecodeBatch(data, n)
			}
		} else {
			batch.Jobs = make([]revoke.Job, 1)
			batch.Jobs[0], err = revoke.DecodeJob(m.Data())
		}
		if err != nil || len(batch.Jobs) == 0 {
			return fmt.Errorf("(f): REVOKE message of %d jobs: %v", len(batch.Jobs), err)
		}
		ack := &batchAck{left: len(batch.Jobs), msg: m}
		us := make([]int, len(batch.Jobs))
		g.mu.Lock()
		for i, j := range batch.Jobs {
			n, err := strconv.Atoi(strings.TrimPrefix(j.Subject.ID, "00u"))
			if err != nil {
				g.mu.Unlock()
				return fmt.Errorf("(f): job for %q", j.Subject.ID)
			}
			u := g.s.user(n)
			us[i] = u
			g.pending[k][u] = ack
		}
		g.mu.Unlock()
		for _, u := range us {
			select {
			case users <- u:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		fed += len(us)
	}
	return nil
}

// answered puts the request's record on AUDIT and acks its batch when it
// was the batch's last.
func (g *guarantees) answered(k, u int) error {
	if err := g.sink.Record(context.Background(), requestRecord(k, g.s.subject(u), g.received)); err != nil {
		return err
	}
	g.mu.Lock()
	ack := g.pending[k][u]
	if ack == nil {
		g.mu.Unlock()
		return fmt.Errorf("(f): an answer for as%d, user %d, whose job is not pending", k, u)
	}
	delete(g.pending[k], u)
	ack.left--
	last := ack.left == 0
	g.mu.Unlock()
	if last {
		return ack.msg.Ack()
	}
	return nil
}
