package stores

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/klauspost/compress/s2"
	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/packed"
)

// auditStream is b's AUDIT stream and what it holds now.
func auditStream(t *testing.T, b *bus.Bus) (jetstream.Stream, *jetstream.StreamInfo) {
	t.Helper()
	s, err := b.JetStream().Stream(context.Background(), bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s, info
}

// indexAll runs an indexer on the index at path until it has indexed the
// AUDIT stream up to its last message, and stops it.
func indexAll(t *testing.T, b *bus.Bus, path string) audit.Head {
	t.Helper()
	ctx := context.Background()
	_, info := auditStream(t, b)
	store, err := audit.OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ix, err := audit.NewIndexer(b.JetStream(), store, audit.IndexerConfig{Stream: bus.StreamAudit, BatchSize: 7, BatchWait: time.Millisecond},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ix.Run(rctx) }()
	// Until the indexer says it has the last message (a bound, not a wait).
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(30 * time.Second); ix.Indexed() < info.State.LastSeq; {
		select {
		case err := <-done:
			t.Fatalf("indexer stopped: %v", err)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("indexed %d of %d messages", ix.Indexed(), info.State.LastSeq)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return store.Head()
}

type row struct {
	seq, streamSeq uint64
	id, typ, body  string
}

func rows(t *testing.T, path string) []row {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.Query(`SELECT seq, stream_seq, id, type, body FROM records ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.seq, &r.streamSeq, &r.id, &r.typ, &r.body); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// The records of one call travel as few AUDIT messages as fit (a group of
// up to maxMessageBytes, a larger record alone, a single record as before),
// and the index takes every message apart into its records, in order, each
// chained over its bytes as published; messages that are not what a worker
// writes are indexed too, as what they are. An indexer stopped between
// messages goes on from the next one, and a fresh index of the same stream
// has the same head.
func TestRecordGroupsAreIndexedAsTheirRecords(t *testing.T) {
	ctx := context.Background()
	b, pub := openBus(t)
	sink := Sink{Pub: pub}
	record := succeeded

	// 1: one record, its own message.
	var want []string
	if err := sink.Record(ctx, record(0)); err != nil {
		t.Fatal(err)
	}
	want = append(want, record(0).ID)
	// 2..: 1,500 records, one of them too large for a group.
	var many []audit.Record
	for i := 1; i <= 1500; i++ {
		r := record(i)
		switch i {
		case 700:
			r.Detail = audit.Detail(map[string]any{"big": strings.Repeat("x", maxMessageBytes)})
		case 5: // newlines in a record never reach its encoding
			r.Detail = json.RawMessage("{\n  \"a\": \"b\"\n}\n")
			r.Error = "line one\nline two\r\n"
		}
		many = append(many, r)
		want = append(want, r.ID)
	}
	if err := sink.Record(ctx, many...); err != nil {
		t.Fatal(err)
	}

	// What the stream holds: groups within the bounds, the large record
	// alone, every record once, in order.
	s, info := auditStream(t, b)
	var stored []string
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		data, err := packed.Unpack(m.Data, m.Header.Values(packed.EncodingHeader))
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		bodies, err := audit.SplitGroup(data, m.Header.Values(audit.GroupHeader))
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if len(bodies) > 1 && (m.Subject != audit.GroupSubject || len(data) > maxMessageBytes || len(bodies) > audit.MaxGroup) {
			t.Errorf("message %d: a group of %d records, %d bytes on %s", seq, len(bodies), len(data), m.Subject)
		}
		// Every message travels packed with the dictionary where that is
		// worth it (decisions 0021, 0024): a group always, to a third or
		// less, a single record as Pack decides.
		_, worth := packed.Pack(data)
		if encoding := m.Header.Get(packed.EncodingHeader); encoding != worth || len(bodies) > 1 && (encoding != packed.S2Dict1 || len(m.Data) > len(data)/3) {
			t.Errorf("message %d: %d records, %d bytes, %d as stored, packed %q", seq, len(bodies), len(data), len(m.Data), encoding)
		}
		if len(bodies) == 1 && m.Subject != "audit."+string(audit.TypeRevocationSucceeded) {
			t.Errorf("message %d: one record on %s", seq, m.Subject)
		}
		for _, body := range bodies {
			var r audit.Record
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatalf("message %d: %v", seq, err)
			}
			stored = append(stored, r.ID)
		}
	}
	if strings.Join(stored, " ") != strings.Join(want, " ") {
		t.Fatalf("the stream holds %d records, not the %d written in order", len(stored), len(want))
	}
	if info.State.LastSeq >= 10 {
		t.Fatalf("%d messages for %d records", info.State.LastSeq, len(want))
	}

	path := filepath.Join(t.TempDir(), "audit.db")
	head := indexAll(t, b, path)
	// This index as it is now, for a copy that loses what comes next.
	earlier := filepath.Join(t.TempDir(), "earlier.db")
	copyIndex(t, path, earlier)
	if head.Seq != uint64(len(want)) || head.StreamSeq != info.State.LastSeq {
		t.Fatalf("head %d of message %d, want %d of %d", head.Seq, head.StreamSeq, len(want), info.State.LastSeq)
	}

	var fifth audit.Record
	if r := rows(t, path)[5]; r.id != record(5).ID || json.Unmarshal([]byte(r.body), &fifth) != nil ||
		fifth.Error != "line one\nline two\r\n" || string(fifth.Detail) != `{"a":"b"}` {
		t.Fatalf("the record with newlines came back as %s %q", r.id, r.body)
	}

	// Then, from elsewhere, messages a worker does not write.
	good0, _ := audit.Encode(record(2000))
	good1, _ := audit.Encode(record(2001))
	pretty, _ := json.MarshalIndent(record(2002), "", "  ")
	s2Of := func(data string) string { return string(s2.Encode(nil, []byte(data))) }
	bomb := s2Of(strings.Repeat("\n", 2<<20)) // valid S2 of 2 MiB: more than a body may be
	for _, m := range []struct {
		data     string
		header   string
		encoding string
	}{
		{string(good0) + "\n" + string(good1), "3", ""},        // says 3, has 2: one undecodable record
		{string(good0) + "\n{\"id\":", "2", ""},                // the second does not decode
		{string(pretty), "", ""},                               // no header: one record, newlines and all
		{string(good0) + "\n" + string(good1) + "\n", "3", ""}, // a third, empty record
		{string(good1) + "\n" + string(good0), "2, 2", ""},     // not a count
		{strings.Repeat("\n", audit.MaxGroup), "1025", ""},     // more than MaxGroup
		{string(good0) + "\n" + string(good1), "02", ""},       // not how a count is written
		{string(good0) + "\n" + string(good1), "2", ""},        // a group like the worker's
		// Packed (decision 0021): a group as the worker packs it, one
		// record packed, and what cannot be unpacked — each of those one
		// undecodable record with the message's bytes.
		{s2Of(string(good0) + "\n" + string(good1)), "2", packed.S2},
		{s2Of(string(good1)), "", packed.S2},
		{string(good0), "", "gzip"},
		{string(good0) + "\n" + string(good1), "2", packed.S2},
		{bomb, "", packed.S2},
		{s2Of(string(good0)), "", packed.S2 + "," + packed.S2},
	} {
		msg := &nats.Msg{Subject: audit.GroupSubject, Data: []byte(m.data), Header: nats.Header{}}
		if m.header != "" {
			msg.Header.Set(audit.GroupHeader, m.header)
		}
		for _, e := range strings.Split(m.encoding, ",") {
			if e != "" {
				msg.Header.Add(packed.EncodingHeader, e)
			}
		}
		if _, err := b.JetStream().PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	head = indexAll(t, b, path) // goes on from where it stopped
	all := rows(t, path)
	tail := all[len(want):]
	type expect struct{ id, body string }
	undecodable := func(i int) string { return fmt.Sprintf("undecodable/%d", len(want)+i+1) }
	exp := []expect{
		{undecodable(0), string(good0) + "\n" + string(good1)},
		{record(2000).ID, string(good0)}, {undecodable(2), `{"id":`},
		{record(2002).ID, string(pretty)},
		{record(2000).ID, string(good0)}, {record(2001).ID, string(good1)}, {undecodable(6), ""},
		{undecodable(7), string(good1) + "\n" + string(good0)},
		{undecodable(8), strings.Repeat("\n", audit.MaxGroup)},
		{undecodable(9), string(good0) + "\n" + string(good1)},
		{record(2000).ID, string(good0)}, {record(2001).ID, string(good1)},
		{record(2000).ID, string(good0)}, {record(2001).ID, string(good1)},
		{record(2001).ID, string(good1)},
		{undecodable(15), "Lw-Encoding: gzip\n" + string(good0)},
		{undecodable(16), "Lw-Encoding: s2\n" + string(good0) + "\n" + string(good1)},
		{undecodable(17), "Lw-Encoding: s2\n" + bomb},
		{undecodable(18), "Lw-Encoding: s2, s2\n" + s2Of(string(good0))},
	}
	if len(tail) != len(exp) {
		t.Fatalf("%d rows for the foreign messages, want %d", len(tail), len(exp))
	}
	for i, e := range exp {
		if tail[i].id != e.id || tail[i].body != e.body {
			t.Errorf("row %d: %s %.60q, want %s %.60q", tail[i].seq, tail[i].id, tail[i].body, e.id, e.body)
		}
	}
	for i, r := range all {
		if r.seq != uint64(i+1) {
			t.Fatalf("row %d has seq %d", i, r.seq)
		}
	}

	rd, err := audit.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if res, err := rd.Verify(ctx, audit.VerifyOptions{}); err != nil || res.Problem != nil || res.HeadSeq != head.Seq {
		t.Fatalf("verify: %+v %v", res, err)
	}
	// A fresh index of the same stream is the same trail, and so is an
	// index that lost its last transactions (what a power loss may take
	// from it: it commits without a sync, decision 0023): it goes on from
	// the head it kept.
	for name, path := range map[string]string{"fresh": filepath.Join(t.TempDir(), "again.db"), "rolled back": earlier} {
		again := indexAll(t, b, path)
		if again.Seq != head.Seq || fmt.Sprintf("%x", again.Hash) != fmt.Sprintf("%x", head.Hash) || again.StreamSeq != head.StreamSeq {
			t.Fatalf("%s: head %d %x (message %d), want %d %x (message %d)", name, again.Seq, again.Hash, again.StreamSeq, head.Seq, head.Hash, head.StreamSeq)
		}
	}
	if got := rows(t, earlier); fmt.Sprint(got) != fmt.Sprint(all) {
		t.Fatalf("the rolled-back index has %d rows, not the %d of the one that kept them", len(got), len(all))
	}
}

// copyIndex copies the closed index at from, with its WAL if it has one,
// to a new path.
func copyIndex(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(from + suffix)
		if errors.Is(err, fs.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// succeeded is the i-th record of a test: event okta:i succeeded at as1.
func succeeded(i int) audit.Record {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	return audit.Record{ID: fmt.Sprintf("okta:%d|as1/succeeded", i), EventID: fmt.Sprint("okta:", i), Time: at, Type: audit.TypeRevocationSucceeded,
		Target: "as1", Subject: &audit.Subject{Email: fmt.Sprintf("u%d@example.com", i)}, Detail: audit.Detail(map[string]any{"n": i})}
}

// errorsTo is a log handler that passes each error's message and attributes
// to ch.
type errorsTo chan string

func (h errorsTo) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h errorsTo) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h errorsTo) WithGroup(string) slog.Handler                { return h }
func (h errorsTo) Handle(_ context.Context, r slog.Record) error {
	text := r.Message
	r.Attrs(func(a slog.Attr) bool { text += " " + a.String(); return true })
	select {
	case h <- text:
	default:
	}
	return nil
}

// An index that holds more of AUDIT than the stream does (its server came
// back from a power loss without its last messages, or the stream was made
// anew) does not read on from its head: the stream's next messages take the
// numbers the index already has and would pass unseen. It stops and says
// why, and indexes nothing.
func TestIndexAheadOfItsStreamStops(t *testing.T) {
	ctx := context.Background()
	b, pub := openBus(t)
	sink := Sink{Pub: pub}
	for i := range 3 {
		if err := sink.Record(ctx, succeeded(i)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "audit.db")
	head := indexAll(t, b, path)

	// The stream anew, with one message: the index holds three.
	js := b.JetStream()
	_, info := auditStream(t, b)
	if err := js.DeleteStream(ctx, bus.StreamAudit); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, info.Config); err != nil {
		t.Fatal(err)
	}
	if err := sink.Record(ctx, succeeded(3)); err != nil {
		t.Fatal(err)
	}

	store, err := audit.OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	logged := make(errorsTo, 1)
	ix, err := audit.NewIndexer(js, store, audit.IndexerConfig{Stream: bus.StreamAudit, BatchSize: 7, BatchWait: time.Millisecond}, slog.New(logged))
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ix.Run(rctx) }()
	select {
	case text := <-logged:
		if !strings.Contains(text, audit.ErrStreamBehind.Error()) || !strings.Contains(text, "up to 3, the stream ends at 1") {
			t.Errorf("logged %q", text)
		}
	case err := <-done:
		t.Fatalf("indexer ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the indexer said nothing of a stream behind its index")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := store.Head(); got.Seq != head.Seq || got.StreamSeq != head.StreamSeq {
		t.Fatalf("head %d (message %d), want it unchanged at %d (message %d)", got.Seq, got.StreamSeq, head.Seq, head.StreamSeq)
	}
	if ahead := ix.Stats().AheadOfStream; ahead != 2 {
		t.Fatalf("the indexer reports %d messages ahead of the stream, want 2", ahead)
	}
}
