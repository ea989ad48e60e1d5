package revoke

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Queue makes jobs and dead letters durable.
type Queue interface {
	Enqueue(ctx context.Context, jobs []Job) error
	DeadLetter(ctx context.Context, dl DeadLetter) error
}

// DeadLetter is a job that will not be retried, with why.
type DeadLetter struct {
	Job        Job       `json:"job"`
	Attempts   int       `json:"attempts"`
	History    []Attempt `json:"history,omitempty"`
	Reason     string    `json:"reason"`
	HTTPStatus int       `json:"http_status,omitempty"`
	At         time.Time `json:"at"`
}

// Grant is an ID-JAG the IdP issued to a subject for an authorization
// server: evidence that the subject may hold that server's tokens.
type Grant struct {
	Audience string    `json:"audience"`
	Client   string    `json:"client,omitempty"`
	Last     time.Time `json:"last"`
}

// Inventory tells which authorization servers a subject received ID-JAGs
// for (the System Log's ID-JAG grants).
type Inventory interface {
	Grants(ctx context.Context, s events.Subject) ([]Grant, error)
}

// Marks remembers, for a while, the events whose jobs are queued: a batch
// groups jobs anew each time, so the REVOKE stream cannot drop the jobs of
// an event planned again after a crash; the planner asks here instead. An
// event is known by its ID and its sequence in LIFECYCLE, which stays the
// same each time the stream delivers it.
type Marks interface {
	Planned(ctx context.Context, m Mark) (bool, error)
	MarkPlanned(ctx context.Context, marks []Mark) error
}

// Mark names an event whose jobs are queued.
type Mark struct {
	Seq   uint64 // its sequence in LIFECYCLE (never 0)
	Event string // its ID
}

// Planner fans an event out to the targets that act on it.
type Planner struct {
	targets   []*Target
	queue     Queue
	recorder  audit.Recorder
	now       func() time.Time
	log       *slog.Logger
	inventory Inventory
	group     *commitGroup
	marks     Marks
	// Backlog is LIFECYCLE's last sequence when this process started:
	// see bus.MaybeSeen. Zero: only redeliveries counted by the server.
	Backlog uint64
}

// WithMarks makes the planner remember the events whose jobs are queued
// and queue nothing for an event it finds marked. An event is looked up
// when it may have been planned before (bus.MaybeSeen): delivered again,
// or stored before this process started, since a server killed with the
// worker (embedded NATS) may come back with its consumers' last acks and
// delivery counts lost and deliver an event planned moments before as new.
func (p *Planner) WithMarks(m Marks) *Planner {
	p.marks = m
	return p
}

// Grouped makes concurrent Plan calls commit together: while one commit is
// being written, the plans that arrive wait and are then written as one,
// so that each target gets one REVOKE message for many events (see Batch).
// Each Plan still returns only once its own jobs and records are durable.
func (p *Planner) Grouped() *Planner {
	p.group = &commitGroup{}
	return p
}

// WithInventory makes the plan of each revoking event name the subject's
// ID-JAG grants, which planned target covers each, and the audiences no
// planned target covers: where the subject may keep tokens that nothing
// revokes.
func (p *Planner) WithInventory(inv Inventory) *Planner {
	p.inventory = inv
	return p
}

// NewPlanner returns a planner over targets.
func NewPlanner(targets []*Target, q Queue, rec audit.Recorder, now func() time.Time, log *slog.Logger) (*Planner, error) {
	if q == nil || rec == nil || now == nil || log == nil {
		return nil, errors.New("planner: queue, recorder, clock and logger are required")
	}
	return &Planner{targets: targets, queue: q, recorder: rec, now: now, log: log}, nil
}

// Plan enqueues one job per interested target and records the plan: one
// revocation.planned record per event, naming the targets it went to and
// why the others were skipped. Planning again is harmless: job and record
// IDs derive from the event ID (see write for what a grouped plan repeats).
func (p *Planner) Plan(ctx context.Context, ev events.Event) error { return p.plan(ctx, ev, 0, true) }

// plan plans ev, stored in LIFECYCLE at seq (0: unknown, so neither looked
// up nor marked); seen says it may have been planned before, so the marks
// are looked up.
func (p *Planner) plan(ctx context.Context, ev events.Event, seq uint64, seen bool) error {
	if seen && p.marks != nil && seq != 0 {
		done, err := p.marks.Planned(ctx, Mark{Seq: seq, Event: ev.ID})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err() // shutting down: the event is delivered again, not lost
			}
			p.log.WarnContext(ctx, "planned marks unavailable; planning again", "event", ev.ID, "err", err)
		}
		if done {
			p.log.DebugContext(ctx, "already planned", "event", ev.ID)
			return nil // its records and jobs are durable: written before the mark
		}
	}
	now := p.now().UTC()
	var jobs []Job
	planned := []string{}
	var skipped []map[string]string
	if ev.Kind.Revokes() {
		jobs = make([]Job, 0, len(p.targets))
		for _, t := range p.targets {
			ok, why := t.Wants(ev)
			if !ok {
				skipped = append(skipped, map[string]string{"target": t.Name, "reason": why})
				continue
			}
			jobs = append(jobs, Job{
				ID: JobID(ev.ID, t.Name), EventID: ev.ID, Target: t.Name, Kind: ev.Kind, Source: ev.Source,
				Cause: ev.Cause, Subject: ev.Subject, Scope: ev.Scope,
				OccurredAt: ev.OccurredAt, ReceivedAt: ev.ReceivedAt, PlannedAt: now,
			})
			planned = append(planned, t.Name)
		}
	}
	detail := map[string]any{"targets": planned}
	outcome := "planned"
	if len(jobs) == 0 {
		outcome = "no_targets"
		detail["reason"] = "no target acts on this event"
		if !ev.Kind.Revokes() {
			detail["reason"] = "kind " + string(ev.Kind) + " is recorded only"
		}
	}
	if len(skipped) > 0 {
		detail["skipped"] = skipped
	}
	if p.inventory != nil && ev.Kind.Revokes() {
		p.noteGrants(ctx, ev, planned, detail)
	}
	occurred := ev.OccurredAt
	recs := []audit.Record{{
		// The receipt: the event is durable, so this record is written
		// once (a copy written again is marked a repeat by the index);
		// received_at is when intake took it.
		ID: ev.ID + "/received", Time: now, Type: audit.TypeEventReceived, EventID: ev.ID,
		Source: string(ev.Source), Kind: string(ev.Kind), Subject: audit.SubjectOf(ev.Subject),
		Outcome: "accepted", OccurredAt: &occurred,
		Detail: audit.Detail(map[string]any{"event_type": ev.Cause, "received_at": ev.ReceivedAt.UTC()}),
	}, {
		ID: ev.ID + "/planned", Time: now, Type: audit.TypeRevocationPlanned, EventID: ev.ID,
		Source: string(ev.Source), Kind: string(ev.Kind), Subject: audit.SubjectOf(ev.Subject),
		Outcome: outcome, OccurredAt: &occurred, Detail: audit.Detail(detail),
	}}
	pl := &plan{event: ev.ID, seq: seq, jobs: jobs, recs: recs}
	if p.group != nil {
		if err := p.group.commit(ctx, pl, p.write); err != nil {
			return fmt.Errorf("commit plan of %s: %w", ev.ID, err)
		}
	} else if err := p.write(ctx, []*plan{pl}); err != nil {
		return fmt.Errorf("commit plan of %s: %w", ev.ID, err)
	}
	p.log.DebugContext(ctx, "planned", "event", ev.ID, "kind", ev.Kind, "jobs", len(jobs))
	return nil
}

// plan is what one event's plan writes.
type plan struct {
	event string
	seq   uint64 // in LIFECYCLE; 0: unknown
	jobs  []Job
	recs  []audit.Record
	done  chan written
}

// written answers a waiting plan: its write's outcome, or its turn to write.
type written struct {
	err  error
	lead bool
}

// write makes plans durable: the records first, then the jobs. Records
// keep their IDs when written again (the index marks the copy a repeat);
// batches of jobs do not, as a retried plan may be grouped with others. So
// a plan that fails on its records (the audit stream full) is retried
// without having queued anything, and only a failure between the two
// writes, or a crash there, queues some jobs twice: a second call to the
// target, whose record the index marks a repeat.
func (p *Planner) write(ctx context.Context, plans []*plan) error {
	nj, nr := 0, 0
	for _, pl := range plans {
		nj, nr = nj+len(pl.jobs), nr+len(pl.recs)
	}
	jobs, recs := make([]Job, 0, nj), make([]audit.Record, 0, nr)
	for _, pl := range plans {
		jobs = append(jobs, pl.jobs...)
		recs = append(recs, pl.recs...)
	}
	if err := p.recorder.Record(ctx, recs...); err != nil {
		return fmt.Errorf("record plans: %w", err)
	}
	if err := p.queue.Enqueue(ctx, jobs); err != nil {
		return fmt.Errorf("enqueue jobs: %w", err)
	}
	if p.marks != nil {
		marks := make([]Mark, 0, len(plans))
		for _, pl := range plans {
			if len(pl.jobs) > 0 && pl.seq != 0 {
				marks = append(marks, Mark{Seq: pl.seq, Event: pl.event})
			}
		}
		// A mark is only ever an optimisation: without it, an event
		// delivered again is planned again, as it always may be.
		if err := p.marks.MarkPlanned(ctx, marks); err != nil {
			p.log.WarnContext(ctx, "planned marks not written", "events", len(marks), "err", err)
		}
	}
	return nil
}

// maxGroup bounds the plans written at once.
const maxGroup = 256

// commitGroup is group commit without a goroutine of its own: a plan that
// finds no write in progress writes at once; plans that arrive meanwhile
// wait, and when the write ends the first of them writes them all (up to
// maxGroup) for the others. Under no load a plan is written alone, at once;
// under load the groups grow by themselves, and no plan waits for more than
// the write before its own.
type commitGroup struct {
	mu      sync.Mutex
	pending []*plan
	writing bool
}

func (g *commitGroup) commit(ctx context.Context, pl *plan, write func(context.Context, []*plan) error) error {
	pl.done = make(chan written, 1)
	g.mu.Lock()
	g.pending = append(g.pending, pl)
	if g.writing {
		g.mu.Unlock()
		if w := <-pl.done; !w.lead {
			return w.err
		}
		g.mu.Lock() // our turn: pl is the first pending plan
	}
	g.writing = true
	n := min(len(g.pending), maxGroup)
	group := g.pending[:n:n]
	g.pending = g.pending[n:]
	g.mu.Unlock()
	// Written for everyone: one caller's end must not cut the others off.
	err := write(context.WithoutCancel(ctx), group)
	for _, q := range group {
		if q != pl {
			q.done <- written{err: err}
		}
	}
	g.mu.Lock()
	if len(g.pending) > 0 {
		g.pending[0].done <- written{lead: true}
	} else {
		g.writing = false
	}
	g.mu.Unlock()
	return err
}

// noteGrants adds the subject's ID-JAG grants to the plan. A failed lookup
// is noted, not fatal: revoking matters more than the evidence.
func (p *Planner) noteGrants(ctx context.Context, ev events.Event, planned []string, detail map[string]any) {
	grants, err := p.inventory.Grants(ctx, ev.Subject)
	if err != nil {
		p.log.WarnContext(ctx, "ID-JAG inventory unavailable", "event", ev.ID, "err", err)
		detail["id_jag_inventory"] = "unavailable: " + err.Error()
		return
	}
	if len(grants) == 0 {
		return
	}
	norm := func(u string) string { return strings.TrimRight(u, "/") }
	var noted []map[string]any
	uncovered := []string{}
	for _, g := range grants {
		entry := map[string]any{"audience": g.Audience, "last_granted": g.Last}
		for _, t := range p.targets {
			if t.Issuer != "" && norm(t.Issuer) == norm(g.Audience) && slices.Contains(planned, t.Name) {
				entry["target"] = t.Name
				break
			}
		}
		if entry["target"] == nil {
			uncovered = append(uncovered, g.Audience)
		}
		noted = append(noted, entry)
	}
	detail["id_jag_grants"] = noted
	if len(uncovered) > 0 {
		detail["uncovered_audiences"] = uncovered
	}
}

// Handler is the Watermill handler over LIFECYCLE messages. An event that
// does not decode is recorded as rejected and acked: no retry can fix it.
func (p *Planner) Handler(msg *message.Message) error {
	ctx := msg.Context()
	ev, err := events.DecodeEvent(msg.Payload)
	if err != nil {
		return p.recorder.Record(ctx, audit.Record{
			ID: "planner/undecodable/" + msg.UUID, Time: p.now().UTC(), Type: audit.TypeEventRejected,
			Error: "undecodable lifecycle message: " + err.Error(),
		})
	}
	return p.plan(ctx, ev, bus.StreamSeq(msg), bus.MaybeSeen(msg, p.Backlog))
}

func jobRecord(job Job, typ audit.Type, now time.Time) audit.Record {
	occurred := job.OccurredAt
	return audit.Record{
		Time: now, Type: typ, EventID: job.EventID, Source: string(job.Source), Kind: string(job.Kind),
		Subject: audit.SubjectOf(job.Subject), Target: job.Target, OccurredAt: &occurred,
	}
}
