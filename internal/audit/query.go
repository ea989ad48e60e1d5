package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Filter selects records. Zero fields do not filter.
type Filter struct {
	// Subject matches the subject's email, login (both case-insensitive)
	// or IdP id.
	Subject string
	EventID string
	Target  string
	Type    string
	Outcome string
	Since   time.Time
	Until   time.Time
	// After is the cursor: only records with a greater seq.
	After uint64
	// Limit caps the page (default 100, at most 1000).
	Limit int
	// Repeats includes the rows that repeat an earlier record (the same
	// record written again after a crash; see the duplicate_of column).
	Repeats bool
}

// MaxLimit is the largest page a query returns.
const MaxLimit = 1000

// Reader queries the index through read-only connections; it works while
// another process writes the same file.
type Reader struct{ db *sql.DB }

// OpenReader opens the index at path read-only.
func OpenReader(path string) (*Reader, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no audit index at %s: run where serve runs, or pass --data-dir DIR or --config FILE (the index is <data_dir>/audit.db)", path)
	} else if err != nil {
		return nil, fmt.Errorf("audit index: %w", err)
	}
	db, err := sql.Open("sqlite3", readerDSN(path))
	if err != nil {
		return nil, fmt.Errorf("open audit index: %w", err)
	}
	db.SetMaxOpenConns(8)
	return &Reader{db: db}, nil
}

// Close closes the reader's connections.
func (r *Reader) Close() error { return r.db.Close() }

// query is the SQL of a Query and its arguments.
func (f Filter) query() (string, []any) {
	var where []string
	var args []any
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	if f.Subject != "" {
		cond, a := subjectMatch(f.Subject)
		add(cond, a...)
	}
	if f.EventID != "" {
		add("event_id = ?", f.EventID)
	}
	if f.Target != "" {
		add("target = ?", f.Target)
	}
	if f.Type != "" {
		add("type = ?", f.Type)
	}
	if f.Outcome != "" {
		add("outcome = ?", f.Outcome)
	}
	if !f.Since.IsZero() {
		add("time_ms >= ?", f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		add("time_ms < ?", f.Until.UnixMilli())
	}
	if f.After > 0 {
		add("seq > ?", f.After)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxLimit)
	if !f.Repeats {
		add("duplicate_of = 0")
	}
	q := "SELECT seq, id, type, body FROM records"
	if f.Subject != "" {
		// The subject's rows, found by seq, are few: without this an index
		// on another filter's column (type, target) can look better to the
		// planner and read every row of that type or target.
		q += " NOT INDEXED"
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq LIMIT ?"
	return q, append(args, limit)
}

// Query returns matching records, oldest first.
func (r *Reader) Query(ctx context.Context, f Filter) ([]Record, error) {
	q, args := f.query()
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query audit: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var seq uint64
		var id, typ string
		var body []byte
		if err := rows.Scan(&seq, &id, &typ, &body); err != nil {
			return nil, fmt.Errorf("scan audit record: %w", err)
		}
		rec, err := Decode(body)
		if err != nil {
			// A message that was undecodable when indexed stays visible.
			rec = Record{ID: id, Type: Type(typ), Error: "record body is not JSON"}
		}
		rec.Seq = seq
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query audit: %w", err)
	}
	return out, nil
}

// subjectMatch is the condition on records for a subject filter: the rows
// that name the subject themselves, found through subject_keys — the
// events it names for any of the subject's keys, and the rows of no event
// it names — instead of an index per identifier on every row
// (docs/decisions/0019).
func subjectMatch(subject string) (string, []any) {
	s := strings.ToLower(subject)
	keys := []any{"e:" + s, "l:" + s, "i:" + subject}
	args := append([]any{s, s, subject}, keys...)
	return `(subject_email = ? OR subject_login = ? OR subject_id = ?) AND seq IN (
		SELECT r.seq FROM subject_keys k JOIN records r ON r.event_id = k.event_id WHERE k.key IN (?, ?, ?) AND k.event_id <> ''
		UNION ALL SELECT seq FROM subject_keys WHERE key IN (?, ?, ?) AND event_id = '')`, append(args, keys...)
}

// Count returns the number of indexed records and the last seq.
func (r *Reader) Count(ctx context.Context) (n, last uint64, err error) {
	err = r.db.QueryRowContext(ctx, "SELECT count(*), coalesce(max(seq), 0) FROM records").Scan(&n, &last)
	if err != nil {
		return 0, 0, fmt.Errorf("count audit: %w", err)
	}
	return n, last, nil
}

// Head returns the last indexed record's seq and chain hash (zero when the
// index is empty): cheap, for watching the index grow.
func (r *Reader) Head(ctx context.Context) (Head, error) {
	var h Head
	err := r.db.QueryRowContext(ctx, "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").Scan(&h.Seq, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return Head{}, nil
	}
	if err != nil {
		return Head{}, fmt.Errorf("audit head: %w", err)
	}
	return h, nil
}
