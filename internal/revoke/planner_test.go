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
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

type inventory struct {
	grants []Grant
	err    error
}

func (i inventory) Grants(context.Context, events.Subject) ([]Grant, error) { return i.grants, i.err }

func planDetail(t *testing.T, inv Inventory, ev events.Event, targets ...*Target) map[string]any {
	t.Helper()
	rec := &memRecorder{}
	p, err := NewPlanner(targets, &memQueue{}, rec, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WithInventory(inv).Plan(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(rec.recs[1].Detail, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// A grant counts as covered only by a target that is planned for this
// event; a target for that server that skips the event leaves it exposed.
// An inventory that cannot be read is noted, and the plan goes on.
func TestPlanNamesIDJAGGrants(t *testing.T) {
	ev := events.Event{ID: "okta:1", Kind: events.KindDeprovisioned, Subject: events.Subject{ID: "00u1", Email: "a@example.com"}}
	linear := &Target{Name: "linear", Issuer: "https://auth.linear.example/", Kinds: []events.Kind{events.KindDeprovisioned}}
	notion := &Target{Name: "notion", Issuer: "https://auth.notion.example", Kinds: []events.Kind{events.KindSuspended}}
	inv := inventory{grants: []Grant{{Audience: "https://auth.linear.example"}, {Audience: "https://auth.notion.example"}, {Audience: "https://shadow.example"}}}
	d := planDetail(t, inv, ev, linear, notion)
	grants, _ := d["id_jag_grants"].([]any)
	uncovered, _ := d["uncovered_audiences"].([]any)
	if len(grants) != 3 || grants[0].(map[string]any)["target"] != "linear" || grants[1].(map[string]any)["target"] != nil ||
		len(uncovered) != 2 || uncovered[0] != "https://auth.notion.example" || uncovered[1] != "https://shadow.example" {
		t.Errorf("detail %v", d)
	}
	d = planDetail(t, inventory{err: errors.New("kv away")}, ev, linear)
	if d["id_jag_inventory"] != "unavailable: kv away" || d["targets"].([]any)[0] != "linear" {
		t.Errorf("detail %v", d)
	}
	if d = planDetail(t, inventory{}, ev, linear); d["id_jag_grants"] != nil || d["uncovered_audiences"] != nil {
		t.Errorf("no grants, but detail %v", d)
	}
}

// gatedQueue blocks each Enqueue until released and remembers the sizes.
type gatedQueue struct {
	memQueue
	entered chan int
	release chan error
}

func (q *gatedQueue) Enqueue(ctx context.Context, jobs []Job) error {
	q.entered <- len(jobs)
	if err := <-q.release; err != nil {
		return err
	}
	return q.memQueue.Enqueue(ctx, jobs)
}

// Grouped plans commit together: the plans that arrive while one is being
// written are written as one group, and each Plan returns only once its
// own jobs are durable, with the outcome of the write that carried them.
func TestGroupedPlansCommitTogether(t *testing.T) {
	q := &gatedQueue{entered: make(chan int), release: make(chan error)}
	as1 := &Target{Name: "as1", Kinds: []events.Kind{events.KindDeprovisioned}}
	p, err := NewPlanner([]*Target{as1}, q, &memRecorder{}, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.Grouped()
	plan := func(i int) <-chan error {
		done := make(chan error, 1)
		go func() {
			done <- p.Plan(context.Background(), events.Event{ID: fmt.Sprintf("okta:%d", i), Kind: events.KindDeprovisioned,
				Subject: events.Subject{Email: fmt.Sprintf("u%d@example.com", i)}})
		}()
		return done
	}
	first := plan(0)
	if n := <-q.entered; n != 1 {
		t.Fatalf("first write carries %d jobs, want 1", n)
	}
	// While the first write is held, ten more plans arrive and wait.
	var rest []<-chan error
	for i := 1; i <= 10; i++ {
		rest = append(rest, plan(i))
	}
	for deadline := time.Now().Add(10 * time.Second); ; runtime.Gosched() {
		p.group.mu.Lock()
		n := len(p.group.pending)
		p.group.mu.Unlock()
		if n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d plans waiting, want 10", n)
		}
	}
	select {
	case err := <-first:
		t.Fatalf("first plan returned before its write ended: %v", err)
	default:
	}
	q.release <- nil
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := <-q.entered; n != 10 {
		t.Fatalf("second write carries %d jobs, want the 10 that waited", n)
	}
	q.release <- errors.New("stream away")
	for i, done := range rest {
		if err := <-done; err == nil || !strings.Contains(err.Error(), "stream away") {
			t.Errorf("plan %d: %v, want the failure of the write that carried it", i+1, err)
		}
	}
	if len(q.queued) != 1 {
		t.Errorf("%d jobs queued, want 1", len(q.queued))
	}
}

type memMarks struct {
	mu      sync.Mutex
	marked  map[Mark]bool
	lookups int
}

func (m *memMarks) Planned(_ context.Context, mk Mark) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	return m.marked[mk], nil
}
func (m *memMarks) MarkPlanned(_ context.Context, marks []Mark) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mk := range marks {
		m.marked[mk] = true
	}
	return nil
}

// An event whose jobs are queued is marked; delivered again (a crash
// before its ack, even one that cost the server its delivery counts), a
// marked event queues and records nothing, an unmarked one is planned again.
func TestEventDeliveredAgainIsNotQueuedTwice(t *testing.T) {
	q, rec, marks := &memQueue{}, &memRecorder{}, &memMarks{marked: map[Mark]bool{}}
	as1 := &Target{Name: "as1", Kinds: []events.Kind{events.KindDeprovisioned}}
	p, err := NewPlanner([]*Target{as1}, q, rec, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.WithMarks(marks)
	p.Backlog = 7 // the event below was stored before this process started
	handle := func(id string, seq, delivered int) {
		t.Helper()
		payload, _ := json.Marshal(events.Event{ID: id, Kind: events.KindDeprovisioned, Subject: events.Subject{Email: "a@example.com"}})
		msg := message.NewMessage("m-"+id, payload)
		msg.Metadata.Set(bus.MetaDelivered, fmt.Sprint(delivered))
		if seq != 0 {
			msg.Metadata.Set(bus.MetaStreamSeq, fmt.Sprint(seq))
		}
		msg.SetContext(context.Background())
		if err := p.Handler(msg); err != nil {
			t.Fatal(err)
		}
	}
	first := Mark{Seq: 7, Event: "okta:1"}
	handle("okta:1", 7, 1)
	if len(q.queued) != 1 || !marks.marked[first] {
		t.Fatalf("first delivery: %d jobs, marks %v", len(q.queued), marks.marked)
	}
	handle("okta:1", 7, 2)
	handle("okta:1", 7, 1) // a server that lost its delivery counts in a crash
	if len(q.queued) != 1 || len(rec.recs) != 2 {
		t.Fatalf("delivered again: %d jobs, %d records; want the first delivery's 1 and 2", len(q.queued), len(rec.recs))
	}
	delete(marks.marked, first) // the crash came between the jobs and the mark
	handle("okta:1", 7, 2)
	if len(q.queued) != 2 {
		t.Fatalf("unmarked and delivered again: %d jobs, want it planned again", len(q.queued))
	}
	handle("okta:1", 0, 2) // no sequence to look up by: planned again, not marked
	if len(q.queued) != 3 || len(marks.marked) != 1 {
		t.Fatalf("without a sequence: %d jobs, marks %v; want it planned again and nothing marked", len(q.queued), marks.marked)
	}
}

// Only an event that may have been planned before is looked up in the
// marks: one stored in LIFECYCLE before this process started (at or below
// Backlog), whatever its delivery count says, or delivered again. One
// stored since and delivered once is planned without a lookup.
func TestOnlyEventsFromBeforeTheStartAreLookedUp(t *testing.T) {
	q, rec, marks := &memQueue{}, &memRecorder{}, &memMarks{marked: map[Mark]bool{{Seq: 100, Event: "okta:old"}: true, {Seq: 150, Event: "okta:new"}: true}}
	as1 := &Target{Name: "as1", Kinds: []events.Kind{events.KindDeprovisioned}}
	p, err := NewPlanner([]*Target{as1}, q, rec, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.WithMarks(marks)
	p.Backlog = 100
	handle := func(id string, seq, delivered int) {
		t.Helper()
		payload, _ := json.Marshal(events.Event{ID: id, Kind: events.KindDeprovisioned, Subject: events.Subject{Email: "a@example.com"}})
		msg := message.NewMessage("m-"+id, payload)
		msg.Metadata.Set(bus.MetaDelivered, fmt.Sprint(delivered))
		msg.Metadata.Set(bus.MetaStreamSeq, fmt.Sprint(seq))
		msg.SetContext(context.Background())
		if err := p.Handler(msg); err != nil {
			t.Fatal(err)
		}
	}
	handle("okta:old", 100, 1) // the server lost its count: looked up, found planned
	if marks.lookups != 1 || len(q.queued) != 0 {
		t.Fatalf("stored before the start: %d lookups, %d jobs; want 1 and none", marks.lookups, len(q.queued))
	}
	handle("okta:fresh", 101, 1)
	if marks.lookups != 1 || len(q.queued) != 1 {
		t.Fatalf("stored since: %d lookups, %d jobs; want no new lookup and its job", marks.lookups, len(q.queued))
	}
	handle("okta:new", 150, 2) // delivered again: looked up, found planned
	if marks.lookups != 2 || len(q.queued) != 1 {
		t.Fatalf("delivered again: %d lookups, %d jobs; want 2 and no new job", marks.lookups, len(q.queued))
	}
}

type failingMarks struct{ memMarks }

func (m *failingMarks) Planned(ctx context.Context, _ Mark) (bool, error) {
	return false, ctx.Err()
}

// On shutdown a lookup of the marks fails with the canceled context: the
// plan ends there, unacked (delivered again after a restart), without a
// warning per event in flight that it is "planning again".
func TestPlanStopsWhenItsContextEnds(t *testing.T) {
	q, rec := &memQueue{}, &memRecorder{}
	as1 := &Target{Name: "as1", Kinds: []events.Kind{events.KindDeprovisioned}}
	var logged strings.Builder
	p, err := NewPlanner([]*Target{as1}, q, rec, time.Now, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p.WithMarks(&failingMarks{memMarks{marked: map[Mark]bool{}}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	payload, _ := json.Marshal(events.Event{ID: "okta:1", Kind: events.KindDeprovisioned, Subject: events.Subject{Email: "a@example.com"}})
	msg := message.NewMessage("m-1", payload)
	msg.Metadata.Set(bus.MetaDelivered, "2")
	msg.Metadata.Set(bus.MetaStreamSeq, "3")
	msg.SetContext(ctx)
	err = p.Handler(msg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("plan: %v, want the context's end", err)
	}
	if len(q.queued) != 0 || len(rec.recs) != 0 || logged.Len() != 0 {
		t.Fatalf("%d jobs, %d records, log %q; want none", len(q.queued), len(rec.recs), logged.String())
	}
}
