package stores

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/packed"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// openBus opens an embedded bus in a fresh directory, and a publisher on
// it; both close when the test ends.
func openBus(t *testing.T) (*bus.Bus, *bus.Publisher) {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Config{Embedded: true, StoreDir: t.TempDir(), Name: "test"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	pub, err := b.NewPublisher("test", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	return b, pub
}

// Fresh jobs travel in batches per target, cut at revoke.MaxBatch jobs or
// maxMessageBytes (a user in many groups makes a large job); a continuing job
// travels alone. Every job is in exactly one message.
func TestEnqueueBatchesPerTarget(t *testing.T) {
	ctx := context.Background()
	b, pub := openBus(t)
	var jobs []revoke.Job
	job := func(target string, i int, groups int) revoke.Job {
		j := revoke.Job{ID: fmt.Sprintf("okta:%d|%s", i, target), EventID: fmt.Sprint("okta:", i), Target: target, Kind: events.KindDeprovisioned,
			Subject: events.Subject{Email: fmt.Sprintf("u%d@example.com", i)}}
		for g := range groups {
			j.Scope.Groups = append(j.Scope.Groups, events.ScopeRef{ID: fmt.Sprintf("group-%06d", g), Name: strings.Repeat("x", 30)})
		}
		return j
	}
	for i := range 250 {
		jobs = append(jobs, job("small", i, 0))
	}
	for i := range 3 {
		jobs = append(jobs, job("large", i, 1500)) // ~95 KB each: two fit in a batch, three do not
	}
	cont := job("small", 999, 0)
	cont.Continues = true
	jobs = append(jobs, cont)
	if err := (Sink{Pub: pub}).Enqueue(ctx, jobs); err != nil {
		t.Fatal(err)
	}

	sizes := map[string][]int{}
	seen := map[string]int{}
	// REVOKE is a work queue: read it as an executor would, with acks.
	cons, err := b.JetStream().CreateConsumer(ctx, bus.StreamRevoke, jetstream.ConsumerConfig{Durable: "test", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	each := func(data []byte) (bool, error) {
		var batch revoke.Batch
		if err := json.Unmarshal(data, &batch); err == nil && len(batch.Jobs) > 0 {
			sizes[batch.Jobs[0].Target] = append(sizes[batch.Jobs[0].Target], len(batch.Jobs))
			for _, j := range batch.Jobs {
				seen[j.ID]++
			}
			if len(data) > maxMessageBytes+64 {
				t.Errorf("a batch of %d bytes", len(data))
			}
			return true, nil
		}
		var j revoke.Job
		if err := json.Unmarshal(data, &j); err != nil {
			return false, err
		}
		sizes[j.Target+"/single"] = append(sizes[j.Target+"/single"], 1)
		seen[j.ID]++
		return true, nil
	}
	batchIDs := map[string]bool{}
	for m := range batch.Messages() {
		data, err := packed.Unpack(m.Data(), m.Headers().Values(packed.EncodingHeader))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := each(data); err != nil {
			t.Fatal(err)
		}
		// Batches of these jobs travel packed, to a fraction of their size
		// (decision 0021); a single job as it is.
		if isPacked := m.Headers().Get(packed.EncodingHeader) != ""; isPacked != (m.Headers().Get(revoke.BatchHeader) != "") || isPacked && len(m.Data()) > len(data)/3 {
			t.Errorf("a message of %d bytes, %d as stored, packed %v, headers %v", len(data), len(m.Data()), isPacked, m.Headers())
		}
		// A batch carries its ID in a header, not as its message ID (the
		// stream keeps no dedup entry for it); a single job keeps its ID.
		h := m.Headers()
		if h.Get(revoke.BatchHeader) != "" {
			id := h.Get(revoke.BatchIDHeader)
			if h.Get(nats.MsgIdHdr) != "" || !strings.HasPrefix(id, "batch/") || batchIDs[id] {
				t.Errorf("batch message headers %v", h)
			}
			batchIDs[id] = true
		} else if h.Get(nats.MsgIdHdr) == "" {
			t.Errorf("a single job without its message ID: %v", h)
		}
	}
	if len(batchIDs) != 4 {
		t.Errorf("%d batch IDs, want 4", len(batchIDs))
	}
	if fmt.Sprint(sizes["small"]) != "[100 100 50]" || fmt.Sprint(sizes["large"]) != "[2]" || fmt.Sprint(sizes["large/single"]) != "[1]" ||
		fmt.Sprint(sizes["small/single"]) != "[1]" {
		t.Errorf("messages %v", sizes)
	}
	if len(seen) != len(jobs) {
		t.Errorf("%d jobs in the stream, want %d", len(seen), len(jobs))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("job %s in %d messages", id, n)
		}
	}
}

// nats.pack: false — batches, record groups and single records are written
// plain, as a version before packing wrote them (decisions 0021, 0024).
func TestPlainSinkWritesUnpacked(t *testing.T) {
	ctx := context.Background()
	b, pub := openBus(t)
	sink := Sink{Pub: pub, Plain: true}
	var jobs []revoke.Job
	var recs []audit.Record
	for i := range 50 {
		jobs = append(jobs, revoke.Job{ID: fmt.Sprintf("okta:%d|as1", i), EventID: fmt.Sprint("okta:", i), Target: "as1",
			Kind: events.KindDeprovisioned, Subject: events.Subject{Email: fmt.Sprintf("u%d@example.com", i)}})
		recs = append(recs, succeeded(i))
	}
	if err := sink.Enqueue(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	if err := sink.Record(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	// A single record, which would be packed too (decision 0024).
	if err := sink.Record(ctx, succeeded(50)); err != nil {
		t.Fatal(err)
	}
	s, err := b.JetStream().Stream(ctx, bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetMsg(ctx, 2); err != nil || m.Header.Get(packed.EncodingHeader) != "" || !json.Valid(m.Data) {
		t.Errorf("a single record: %v, %v; want it plain", m, err)
	}
	for _, stream := range []string{bus.StreamRevoke, bus.StreamAudit} {
		s, err := b.JetStream().Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetMsg(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(packed.EncodingHeader) != "" || !json.Valid(bytes.SplitN(m.Data, []byte("\n"), 2)[0]) || len(m.Data) < 5000 {
			t.Errorf("%s: %d bytes, headers %v; want a plain batch or group", stream, len(m.Data), m.Header)
		}
	}
}

// plannedBucket opens an embedded bus and its planned bucket.
func plannedBucket(t *testing.T) (*bus.Bus, jetstream.KeyValue) {
	t.Helper()
	b, _ := openBus(t)
	kv, err := b.KV(context.Background(), bus.KVPlanned)
	if err != nil {
		t.Fatal(err)
	}
	return b, kv
}

// Planned marks take a key of the planned bucket per range of LIFECYCLE
// sequences, not per event: the server keeps every subject of a stream in
// memory. A mark is found by its sequence and event; another event at the
// same sequence (LIFECYCLE made anew) is not marked, nor is a sequence
// never marked.
func TestMarksShareAKeyPerRangeOfSequences(t *testing.T) {
	ctx := context.Background()
	b, kv := plannedBucket(t)
	m := NewMarks(kv, time.Unix(1700000000, 0))
	const n = 1000
	for from := 1; from <= n; from += 50 { // as the planner writes them: a group at a time
		var group []revoke.Mark
		for seq := from; seq < from+50; seq++ {
			group = append(group, revoke.Mark{Seq: uint64(seq), Event: fmt.Sprintf("okta:ev%d", seq)})
		}
		if err := m.MarkPlanned(ctx, group); err != nil {
			t.Fatal(err)
		}
	}
	for seq := 1; seq <= n; seq++ {
		if ok, err := m.Planned(ctx, revoke.Mark{Seq: uint64(seq), Event: fmt.Sprintf("okta:ev%d", seq)}); !ok || err != nil {
			t.Fatalf("seq %d: planned %v, %v; want marked", seq, ok, err)
		}
	}
	for _, mk := range []revoke.Mark{{Seq: 5, Event: "okta:other"}, {Seq: n + 1, Event: "okta:ev1001"}, {Seq: 0, Event: "okta:ev1"}} {
		if ok, err := m.Planned(ctx, mk); ok || err != nil {
			t.Fatalf("%+v: planned %v, %v; want not marked", mk, ok, err)
		}
	}
	anew := NewMarks(kv, time.Unix(1700000001, 0))
	if ok, err := anew.Planned(ctx, revoke.Mark{Seq: 5, Event: "okta:ev5"}); ok || err != nil {
		t.Fatalf("seq 5 of a LIFECYCLE made anew: planned %v, %v; want not marked", ok, err)
	}
	info, err := b.JetStream().Stream(ctx, "KV_"+bus.KVPlanned)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().State.NumSubjects; got != n/markRange+1 {
		t.Fatalf("%d keys for %d marks, want %d (one per range of %d sequences)", got, n, n/markRange+1, markRange)
	}
}

// Writers of one range (replicas planning events of the same stretch of
// LIFECYCLE) take turns by the key's revision: no mark is lost to a write
// that read the key before another's.
func TestMarksOfConcurrentWritersAllHold(t *testing.T) {
	ctx := context.Background()
	_, kv := plannedBucket(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	created := time.Unix(1700000000, 0)
	for w := range 2 {
		m := NewMarks(kv, created) // each its own: two processes
		wg.Go(func() {
			for seq := 1 + w; seq < markRange; seq += 2 {
				if err := m.MarkPlanned(ctx, []revoke.Mark{{Seq: uint64(seq), Event: fmt.Sprint("okta:", seq)}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	m := NewMarks(kv, created)
	for seq := 1; seq < markRange; seq++ {
		if ok, err := m.Planned(ctx, revoke.Mark{Seq: uint64(seq), Event: fmt.Sprint("okta:", seq)}); !ok || err != nil {
			t.Fatalf("seq %d: planned %v, %v; want marked", seq, ok, err)
		}
	}
}

// Marks outlive the server: a worker started again (its embedded server
// reading its store back) finds the events planned before, by sequence and
// event, and remembers no revision of the process before it.
func TestMarksHoldAcrossARestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	created := time.Unix(1700000000, 0)
	open := func() (*bus.Bus, *Marks) {
		t.Helper()
		b, err := bus.Open(ctx, bus.Config{Embedded: true, StoreDir: dir, Name: "test"}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		kv, err := b.KV(ctx, bus.KVPlanned)
		if err != nil {
			t.Fatal(err)
		}
		return b, NewMarks(kv, created)
	}
	b, m := open()
	for seq := uint64(1); seq <= 300; seq += 3 {
		if err := m.MarkPlanned(ctx, []revoke.Mark{{Seq: seq, Event: fmt.Sprint("okta:", seq)}}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	b, m = open()
	defer b.Close()
	for seq := uint64(1); seq <= 300; seq++ {
		ok, err := m.Planned(ctx, revoke.Mark{Seq: seq, Event: fmt.Sprint("okta:", seq)})
		if err != nil || ok != (seq%3 == 1) {
			t.Fatalf("seq %d after a restart: planned %v, %v; want %v", seq, ok, err, seq%3 == 1)
		}
	}
	// The new process writes into the ranges the old one wrote.
	if err := m.MarkPlanned(ctx, []revoke.Mark{{Seq: 2, Event: "okta:2"}, {Seq: 299, Event: "okta:299"}}); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{1, 2, 4, 298, 299} {
		if ok, err := m.Planned(ctx, revoke.Mark{Seq: seq, Event: fmt.Sprint("okta:", seq)}); !ok || err != nil {
			t.Fatalf("seq %d: planned %v, %v; want marked", seq, ok, err)
		}
	}
}
