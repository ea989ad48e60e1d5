package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func rec(t *testing.T, seq uint64, typ Type, email, target string) Entry {
	t.Helper()
	e, err := NewEntry(seq, Record{ID: fmt.Sprintf("r%d", seq), Time: time.Unix(1700000000+int64(seq), 0).UTC(), Type: typ,
		EventID: "okta:e" + fmt.Sprint(seq%3), Subject: &Subject{Email: email, Login: email}, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// newStore opens a new index in a test's temp dir, closed when the test
// ends (closing it sooner is fine).
func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := OpenStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestStoreChainsAndQueries(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	batch := []Entry{
		rec(t, 1, TypeEventReceived, "Jane@Example.com", ""),
		rec(t, 2, TypeRevocationPlanned, "jane@example.com", "as1"),
		rec(t, 3, TypeRevocationSucceeded, "jane@example.com", "as1"),
		rec(t, 4, TypeEventReceived, "bob@example.com", ""),
	}
	if err := s.Append(ctx, batch[:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, batch[2:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []Entry{rec(t, 6, TypeEventReceived, "x@example.com", "")}); !errors.Is(err, ErrGap) {
		t.Fatalf("a gap was accepted: %v", err)
	}
	if err := s.Append(ctx, []Entry{rec(t, 4, TypeEventReceived, "x@example.com", "")}); !errors.Is(err, ErrGap) {
		t.Fatalf("a repeated seq was accepted: %v", err)
	}

	// Reopening finds the same head.
	head := s.Head()
	s.Close()
	s, err := OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if h := s.Head(); h.Seq != 4 || fmt.Sprintf("%x", h.Hash) != fmt.Sprintf("%x", head.Hash) {
		t.Fatalf("head after reopen %d %x, want 4 %x", h.Seq, h.Hash, head.Hash)
	}

	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{Subject: "JANE@example.com"}, "[1 2 3]"},
		{Filter{Subject: "bob@example.com"}, "[4]"},
		{Filter{Target: "as1", Type: string(TypeRevocationSucceeded)}, "[3]"},
		{Filter{Subject: "jane@example.com", After: 1, Limit: 1}, "[2]"},
		{Filter{Since: time.Unix(1700000003, 0)}, "[3 4]"},
		{Filter{EventID: "okta:e1"}, "[1 4]"},
	} {
		if got := querySeqs(t, r, c.f); got != c.want {
			t.Errorf("%+v: got %s, want %s", c.f, got, c.want)
		}
	}
}

// querySeqs is what a query returns, as the list of the records' seqs.
func querySeqs(t *testing.T, r *Reader, f Filter) string {
	t.Helper()
	recs, err := r.Query(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	seqs := []uint64{}
	for _, x := range recs {
		seqs = append(seqs, x.Seq)
	}
	return fmt.Sprint(seqs)
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"30d":                  now.Add(-30 * 24 * time.Hour),
		"90m":                  now.Add(-90 * time.Minute),
		"2026-11-01T00:00:00Z": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseTime("yesterday", now); err == nil {
		t.Error("nonsense accepted")
	}
}

// A record the stream holds twice (its writer ran again) is indexed twice,
// so the chain covers every message, and the later row is marked a repeat
// of the first, in the same batch or a later one: queries, offboardings and
// observers see it once; verify holds the marks against the rows, so that
// marking a record a repeat cannot hide it.
// A batch looks up the earlier rows of its events in chunks (lookupChunk
// events a query): a repeat whose event is in any chunk is found.
func TestRepeatsFoundAcrossLookupChunks(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	n := 2*lookupChunk + 7
	batch := func(from uint64) []Entry {
		es := make([]Entry, n)
		for i := range es {
			ev := fmt.Sprintf("okta:%d", i)
			e, err := NewEntry(from+uint64(i), Record{ID: ev + "|as1/succeeded", Time: time.Unix(1700000000, 0).UTC(),
				Type: TypeRevocationSucceeded, EventID: ev, Target: "as1", Outcome: "succeeded"})
			if err != nil {
				t.Fatal(err)
			}
			es[i] = e
		}
		return es
	}
	first, again := batch(1), batch(uint64(n)+1)
	if err := s.Append(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, again); err != nil {
		t.Fatal(err)
	}
	for i := range again {
		if first[i].DuplicateOf != 0 || again[i].DuplicateOf != first[i].Seq {
			t.Fatalf("record %d: first marked %d, repeat marked %d, want 0 and %d", i, first[i].DuplicateOf, again[i].DuplicateOf, first[i].Seq)
		}
	}
}

func TestRepeatedRecordsAreIndexedOnceForQueries(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	entry := func(seq uint64, id, event string) Entry {
		e, err := NewEntry(seq, Record{ID: id, Time: time.Unix(1700000000+int64(seq), 0).UTC(), Type: TypeRevocationSucceeded,
			EventID: event, Kind: "deprovisioned", Subject: &Subject{Email: "jane@example.com"}, Target: "as1", Outcome: "succeeded"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	first := []Entry{entry(1, "okta:1|as1/succeeded", "okta:1"), entry(2, "okta:1|as1/succeeded", "okta:1"), entry(3, "okta:2|as1/succeeded", "okta:2"),
		entry(4, "same-id-other-event", "okta:3")}
	if err := s.Append(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := []Entry{entry(5, "okta:2|as1/succeeded", "okta:2"), entry(6, "same-id-other-event", "okta:4")}
	if err := s.Append(ctx, second); err != nil {
		t.Fatal(err)
	}
	if first[1].DuplicateOf != 1 || second[0].DuplicateOf != 3 || first[0].DuplicateOf != 0 || first[3].DuplicateOf != 0 || second[1].DuplicateOf != 0 {
		t.Fatalf("marks %d %d %d %d | %d %d", first[0].DuplicateOf, first[1].DuplicateOf, first[2].DuplicateOf, first[3].DuplicateOf, second[0].DuplicateOf, second[1].DuplicateOf)
	}
	s.Close()
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := r.Query(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	withRepeats, err := ParseFilter(map[string][]string{"repeats": {"true"}}) // the API's and CLI's ?repeats=true
	if err != nil {
		t.Fatal(err)
	}
	all, err := r.Query(ctx, withRepeats)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFilter(map[string][]string{"repeats": {"maybe"}}); err == nil {
		t.Error("repeats=maybe accepted")
	}
	r.Close()
	if len(recs) != 4 || len(all) != 6 {
		t.Fatalf("%d records, %d with repeats; want 4 and 6", len(recs), len(all))
	}
	if res := verifyWith(t, path, VerifyOptions{}); res.Problem != nil {
		t.Fatalf("verify: %+v", res.Problem)
	}
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tamper := range []struct{ sql, want string }{
		{"UPDATE records SET duplicate_of = 1 WHERE seq = 3", "marked as a repeat"},
		{"UPDATE records SET duplicate_of = 0 WHERE seq = 2", "not marked as a repeat"},
	} {
		if _, err := db.Exec(tamper.sql); err != nil {
			t.Fatal(err)
		}
		res := verifyWith(t, path, VerifyOptions{})
		if res.Problem == nil || !strings.Contains(res.Problem.Reason, tamper.want) {
			t.Errorf("after %q: problem %+v, want %q", tamper.sql, res.Problem, tamper.want)
		}
		if _, err := db.Exec("UPDATE records SET duplicate_of = CASE seq WHEN 2 THEN 1 WHEN 5 THEN 3 ELSE 0 END"); err != nil {
			t.Fatal(err)
		}
	}
}

// groupEntries are the entries of one AUDIT message at msg carrying n
// records, the first at seq.
func groupEntries(t *testing.T, msg, seq uint64, n int) []Entry {
	t.Helper()
	var out []Entry
	for i := range n {
		e := rec(t, seq+uint64(i), TypeRevocationSucceeded, "jane@example.com", "as1")
		e.StreamSeq = msg
		out = append(out, e)
	}
	return out
}

// A message is indexed whole, in order: a batch must start with the message
// after the head's, and within it each record's message is the one before's
// or the next. An index written before groups (stream_seq 0: each row its
// own message, at its seq) continues where it was.
func TestAppendTakesWholeMessagesInOrder(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	// Records 1..3, each its own message, as an earlier version wrote them.
	if err := s.Append(ctx, []Entry{rec(t, 1, TypeEventReceived, "", ""), rec(t, 2, TypeEventReceived, "", ""), rec(t, 3, TypeEventReceived, "", "")}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	exec(t, path, `UPDATE records SET stream_seq = 0`)
	s, err := OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if h := s.Head(); h.Seq != 3 || h.StreamSeq != 3 {
		t.Fatalf("head of an index from before groups: %+v", h)
	}
	// Message 4 carries records 4..6, message 5 record 7, message 6 8..9.
	batch := append(groupEntries(t, 4, 4, 3), groupEntries(t, 5, 7, 1)...)
	for _, bad := range []struct {
		name    string
		entries []Entry
	}{
		{"skips a message", groupEntries(t, 5, 4, 2)},
		{"continues the head's message", groupEntries(t, 3, 4, 2)},
		{"goes back a message", append(groupEntries(t, 4, 4, 2), groupEntries(t, 3, 6, 1)...)},
		{"skips one inside", append(groupEntries(t, 4, 4, 2), groupEntries(t, 6, 6, 1)...)},
	} {
		if err := s.Append(ctx, bad.entries); !errors.Is(err, ErrGap) {
			t.Errorf("a batch that %s was accepted: %v", bad.name, err)
		}
	}
	if err := s.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, groupEntries(t, 5, 8, 1)); !errors.Is(err, ErrGap) {
		t.Errorf("a batch continuing an indexed message was accepted: %v", err)
	}
	if err := s.Append(ctx, groupEntries(t, 6, 8, 2)); err != nil {
		t.Fatal(err)
	}
	if h := s.Head(); h.Seq != 9 || h.StreamSeq != 6 {
		t.Fatalf("head %+v, want record 9 of message 6", h)
	}
	s.Close()
	if s, err = OpenStore(ctx, path); err != nil {
		t.Fatal(err)
	}
	if h := s.Head(); h.Seq != 9 || h.StreamSeq != 6 {
		t.Fatalf("head after reopen %+v, want record 9 of message 6", h)
	}
	if res := verifyWith(t, path, VerifyOptions{}); res.Problem != nil || res.Records != 9 {
		t.Fatalf("verify: %+v", res)
	}
}

// subjectEntries are the records of two events and of none: the IdP names
// Jane by id and login, the executor's record adds the email it resolved;
// a record of event e1 is written again (a consumer that ran again); a
// record of no event names Bob.
func subjectEntries(t *testing.T) []Entry {
	t.Helper()
	jane := &Subject{ID: "00uJane", Login: "Jane.Doe@Example.com"}
	resolved := &Subject{ID: "00uJane", Login: "Jane.Doe@Example.com", Email: "JANE@example.com"}
	bob := &Subject{Email: "bob@example.com"}
	var out []Entry
	for _, r := range []Record{
		{ID: "e1", Type: TypeEventReceived, EventID: "okta:e1", Subject: jane},
		{ID: "e1|as1/planned", Type: TypeRevocationPlanned, EventID: "okta:e1", Subject: jane, Target: "as1"},
		{ID: "e1|as1/succeeded", Type: TypeRevocationSucceeded, EventID: "okta:e1", Subject: resolved, Target: "as1"},
		{ID: "auth", Type: TypeEventRejected, Subject: bob},
		{ID: "e1|as1/planned", Type: TypeRevocationPlanned, EventID: "okta:e1", Subject: jane, Target: "as1"},
		{ID: "e2", Type: TypeEventReceived, EventID: "okta:e2", Subject: resolved},
		{ID: "auth", Type: TypeEventRejected, Subject: bob},
	} {
		seq := uint64(len(out) + 1)
		r.Time = time.Unix(1700000000+int64(seq), 0).UTC()
		e, err := NewEntry(seq, r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func subjectKeyRows(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT key, event_id, seq FROM subject_keys ORDER BY seq, key`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var key, event string
		var seq int
		if err := rows.Scan(&key, &event, &seq); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d %s %s", seq, event, key))
	}
	return strings.Join(out, "; ")
}

// Who a record is about is keyed once per event (decision 0019): an
// identifier gets a row when the first record of its event carries it —
// in the same batch or a later one — and a record of no event gets rows of
// its own. Subject queries find through those rows what they found through
// an index on every row, and an index written before the table existed
// migrates to the same rows.
func TestSubjectsAreKeyedOncePerEvent(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	entries := subjectEntries(t)
	for _, b := range [][]Entry{entries[:2], entries[2:6], entries[6:]} {
		if err := s.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	const want = "1 okta:e1 i:00uJane; 1 okta:e1 l:jane.doe@example.com; 3 okta:e1 e:jane@example.com; 4  e:bob@example.com; " +
		"6 okta:e2 e:jane@example.com; 6 okta:e2 i:00uJane; 6 okta:e2 l:jane.doe@example.com; 7  e:bob@example.com"
	if got := subjectKeyRows(t, path); got != want {
		t.Fatalf("subject_keys:\n got %s\nwant %s", got, want)
	}

	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{Subject: "jane@EXAMPLE.com"}, "[3 6]"}, // the rows that carry the email
		{Filter{Subject: "jane.doe@example.com"}, "[1 2 3 6]"},
		{Filter{Subject: "jane.doe@example.com", Repeats: true}, "[1 2 3 5 6]"},
		{Filter{Subject: "00uJane", Type: string(TypeRevocationPlanned)}, "[2]"},
		{Filter{Subject: "00ujane"}, "[]"}, // an IdP id is exact
		{Filter{Subject: "bob@example.com"}, "[4 7]"},
		{Filter{Subject: "bob@example.com", After: 4}, "[7]"},
		{Filter{Subject: "jane.doe@example.com", After: 1, Limit: 2}, "[2 3]"},
		{Filter{Subject: "eve@example.com"}, "[]"},
	} {
		if got := querySeqs(t, r, c.f); got != c.want {
			t.Errorf("%+v: got %s, want %s", c.f, got, c.want)
		}
	}
	if res := verifyWith(t, path, VerifyOptions{}); res.Problem != nil || res.Records != 7 {
		t.Fatalf("verify: %+v", res)
	}

	// The same trail as an index made before migration 0005: no table, an
	// index per identifier. Opening it migrates to the same rows.
	exec(t, path, `DROP TABLE subject_keys`, `DELETE FROM schema_migrations WHERE name = '0005_subject_keys.sql'`,
		`CREATE INDEX records_subject_email ON records (subject_email)`, `CREATE INDEX records_subject_login ON records (subject_login)`,
		`CREATE INDEX records_subject_id ON records (subject_id)`)
	s, err = OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := subjectKeyRows(t, path); got != want {
		t.Fatalf("subject_keys after migration:\n got %s\nwant %s", got, want)
	}
	if res := verifyWith(t, path, VerifyOptions{}); res.Problem != nil {
		t.Fatalf("verify after migration: %+v", res)
	}
}

// A subject query reads the subject's rows by seq, whatever else it
// filters on: with an index on another filter's column, or a seq range,
// the planner could otherwise read every row of that type, target or range.
func TestSubjectQueriesReadRowsBySeq(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	var entries []Entry
	for i := 1; i <= 2000; i++ {
		entries = append(entries, rec(t, uint64(i), TypeRevocationSucceeded, fmt.Sprintf("u%d@example.com", i/10), "as1"))
	}
	if err := s.Append(ctx, entries); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	since := time.Unix(1700000000, 0)
	filters := []Filter{
		{Subject: "u7@example.com"},
		{Subject: "u7@example.com", Type: string(TypeRevocationSucceeded)},
		{Subject: "u7@example.com", Target: "as1", Outcome: "succeeded"},
		{Subject: "u7@example.com", EventID: "okta:e1"},
		{Subject: "u7@example.com", Since: since, Until: since.Add(time.Hour)},
		{Subject: "u7@example.com", After: 3, Repeats: true},
	}
	queries := []func() (string, []any){
		OffboardingFilter{Subject: "u7@example.com", Since: since}.query,
		OffboardingFilter{Subject: "u7@example.com", Until: since, Limit: 5}.query,
	}
	for _, f := range filters {
		queries = append(queries, f.query)
	}
	for _, query := range queries {
		q, args := query()
		rows, err := r.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		var outer []string
		for _, d := range plan {
			if strings.Contains(d, " records ") || strings.HasSuffix(d, " records") {
				outer = append(outer, d)
			}
		}
		if len(outer) != 1 || outer[0] != "SEARCH records USING INTEGER PRIMARY KEY (rowid=?)" {
			t.Errorf("%s reads records by %q; plan:\n%s", q, outer, strings.Join(plan, "\n"))
		}
	}
}

// The store remembers the rows of recent events so that an event's later
// records need not read them again; it remembers committed rows only, at
// most recentMax events, and an event it has forgotten is read from the
// index. A batch that fails halfway leaves nothing behind: the same record
// indexed afterwards is a first copy, keyed for its event.
func TestRecentEventsHoldOnlyCommittedRows(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	s.recentMax = 2
	jane := &Subject{ID: "00uJane", Email: "jane@example.com"}
	entry := func(seq uint64, event, id string, sub *Subject) Entry {
		e, err := NewEntry(seq, Record{ID: id, Time: time.Unix(1700000000+int64(seq), 0).UTC(), Type: TypeRevocationSucceeded,
			EventID: event, Subject: sub, Target: "as1", Outcome: "succeeded"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	append1 := func(e Entry, want uint64) {
		t.Helper()
		b := []Entry{e}
		if err := s.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
		if b[0].DuplicateOf != want {
			t.Errorf("record %d (%s): a repeat of %d, want %d", b[0].Seq, b[0].Record.ID, b[0].DuplicateOf, want)
		}
	}
	append1(entry(1, "okta:e1", "e1|as1/succeeded", jane), 0)
	jdoe := &Subject{Login: "jdoe"}
	if err := s.Append(ctx, []Entry{entry(2, "okta:e1", "e1|as2/succeeded", jdoe), entry(4, "okta:x", "x", nil)}); !errors.Is(err, ErrGap) {
		t.Fatalf("a batch with a gap: %v", err)
	}
	append1(entry(2, "okta:e1", "e1|as2/succeeded", jdoe), 0) // not a repeat of the batch that failed
	append1(entry(3, "okta:e1", "e1|as1/succeeded", jane), 1) // remembered
	append1(entry(4, "okta:e2", "e2", nil), 0)
	append1(entry(5, "okta:e3", "e3", nil), 0) // okta:e1 forgotten
	if len(s.recent) != 2 || s.recent["okta:e1"] != nil {
		t.Errorf("the store remembers %d events (okta:e1: %v), want okta:e2 and okta:e3", len(s.recent), s.recent["okta:e1"] != nil)
	}
	append1(entry(6, "okta:e1", "e1|as1/succeeded", &Subject{ID: "00uJane", Login: "JDoe"}), 1) // read from the index
	append1(entry(7, "okta:e1", "e1|as3/succeeded", &Subject{Login: "jdoe2"}), 0)
	const want = "1 okta:e1 e:jane@example.com; 1 okta:e1 i:00uJane; 2 okta:e1 l:jdoe; 7 okta:e1 l:jdoe2"
	if got := subjectKeyRows(t, path); got != want {
		t.Fatalf("subject_keys:\n got %s\nwant %s", got, want)
	}
	if res := verifyWith(t, path, VerifyOptions{}); res.Problem != nil || res.Records != 7 {
		t.Fatalf("verify: %+v", res)
	}
}
