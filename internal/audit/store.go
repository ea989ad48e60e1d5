package audit

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // the SQLite driver (cgo)

	"github.com/lifecycle-worker/lifecycle-worker/schema"
)

// Store is the writable audit index. One process writes a given file; it
// keeps a single connection with immediate transactions so the chain's
// read-then-write never races.
type Store struct {
	db       *sql.DB
	path     string
	headSeq  uint64
	headHash []byte
	headMsg  uint64 // the AUDIT message the head record came in
	// recent remembers what the rows of the events of the last batches
	// say (see earlierRows), so that an event whose records arrive over
	// several batches — one per target — is read from the index once.
	// Only committed rows are in it; at most recentMax events, the oldest
	// forgotten first (ring).
	recent    map[string]*eventRows
	ring      []string
	ringNext  int
	recentMax int
}

// recentEvents is how many events' rows a store remembers: a few seconds of
// a burst of offboardings (~1.2 KB each).
const recentEvents = 2048

// eventRows is what the indexed rows of one event say: the seq of the first
// copy of each record ID, and the subject keys the event has in
// subject_keys.
type eventRows struct {
	first map[string]uint64
	keys  map[string]bool
}

// Head is the last indexed record's sequence and chain hash, and the AUDIT
// message it came in (StreamSeq: where the indexer resumes).
type Head struct {
	Seq       uint64
	Hash      []byte
	StreamSeq uint64
}

// writerDSN: the writer appends (rowids and times in order; the subject
// and event keys wherever they fall), so its page cache holds the B-trees'
// right edges and little else worth keeping; pages it misses come from the
// kernel's page cache, which is not the process's memory. 4 MiB instead of
// 16 took the benchmark's peak RSS down 8-14 MB at N=10k (an index of
// 137 MB) with no change in CPU per revocation, numbered or random subjects.
// It commits without a sync (synchronous=NORMAL; decision 0023): the index
// is a projection that holds its own cursor, so a commit a power loss takes
// is indexed again from the AUDIT stream, identically; a crash of the
// process takes none. The sync of every commit cost ~2 % of the worker's
// CPU in the benchmark.
func writerDSN(path string) string {
	return "file:" + url.PathEscape(path) + "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000&_txlock=immediate&_foreign_keys=on&_cache_size=-4096"
}

func readerDSN(path string) string {
	return "file:" + url.PathEscape(path) + "?mode=ro&_busy_timeout=5000&_cache_size=-8192"
}

// OpenStore opens (creating if needed) the index at path and migrates it.
func OpenStore(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create audit dir: %w", err)
	}
	// The index holds who was offboarded and why: readable by this user
	// only. SQLite gives its -wal and -shm files the database's mode.
	if err := ownerOnly(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite3", writerDSN(path))
	if err != nil {
		return nil, fmt.Errorf("open audit db: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	s := &Store{db: db, path: path, recent: map[string]*eventRows{}, recentMax: recentEvents}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if _, err := db.ExecContext(ctx, "PRAGMA journal_size_limit=67108864"); err != nil {
		db.Close()
		return nil, fmt.Errorf("audit db pragma: %w", err)
	}
	if err := s.loadHead(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_ms INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("audit migrations table: %w", err)
	}
	names, err := fs.Glob(schema.Migrations, "*.sql")
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		body, err := fs.ReadFile(schema.Migrations, name)
		if err != nil {
			return fmt.Errorf("read migration %s: %w", name, err)
		}
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
		var done int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = ?`, name).Scan(&done); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", name, err)
		}
		if done > 0 {
			tx.Rollback()
			continue
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("apply migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_ms) VALUES (?, ?)`, name, time.Now().UnixMilli()); err != nil {
			tx.Rollback()
			return fmt.Errorf("record migration %s: %w", name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit migration %s: %w", name, err)
		}
	}
	return nil
}

func (s *Store) loadHead(ctx context.Context) error {
	var seq, msg uint64
	var hash []byte
	err := s.db.QueryRowContext(ctx, `SELECT seq, hash, stream_seq FROM records ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash, &msg)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		s.headSeq, s.headHash, s.headMsg = 0, make([]byte, sha256.Size), 0
	case err != nil:
		return fmt.Errorf("read audit head: %w", err)
	default:
		s.headSeq, s.headHash, s.headMsg = seq, hash, streamSeqOf(seq, msg)
	}
	return nil
}

// streamSeqOf is the AUDIT message of the row at seq: rows indexed before
// messages carried several records have 0, and were each the message at
// their own seq.
func streamSeqOf(seq, streamSeq uint64) uint64 {
	if streamSeq == 0 {
		return seq
	}
	return streamSeq
}

// Head returns the last indexed record.
func (s *Store) Head() Head {
	return Head{Seq: s.headSeq, Hash: append([]byte(nil), s.headHash...), StreamSeq: s.headMsg}
}

// ChainHash is SHA-256(prev ‖ seq ‖ body), seq as 8 bytes big-endian and
// body the record exactly as it was published: the link of the hash chain.
func ChainHash(prev []byte, seq uint64, body []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	h.Write(s[:])
	h.Write(body)
	return h.Sum(nil)
}

// Entry is one record to index: its place in the trail (Seq), the AUDIT
// message it came in (StreamSeq; a message carries one record or a group,
// docs/decisions/0017), its bytes as published (what the chain covers),
// and the record decoded from them.
type Entry struct {
	Seq       uint64
	StreamSeq uint64
	Body      []byte
	Record    Record
	// DuplicateOf is set by Append: the seq of the first entry with the
	// same event and record ID, when this one repeats it (0: it does not).
	DuplicateOf uint64
}

// NewEntry encodes rec as the body of an entry at seq, the only record of
// the AUDIT message at seq.
func NewEntry(seq uint64, rec Record) (Entry, error) {
	rec.Seq = 0
	body, err := Encode(rec)
	if err != nil {
		return Entry{}, fmt.Errorf("encode audit record: %w", err)
	}
	rec.Seq = seq
	return Entry{Seq: seq, StreamSeq: seq, Body: body, Record: rec}, nil
}

// ErrGap means a batch does not continue the indexed sequence.
var ErrGap = errors.New("audit: records out of sequence")

// Append indexes entries, which must continue the trail exactly (seq =
// head+1, head+2, …) and come from whole AUDIT messages in stream order
// (each entry's StreamSeq the one before's, or the next), in one
// transaction.
func (s *Store) Append(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin audit batch: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO records
		(seq, id, time_ms, type, event_id, source, kind, subject_id, subject_login, subject_email, target, outcome, indexed_ms, body, prev_hash, hash, duplicate_of, stream_seq)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("prepare audit insert: %w", err)
	}
	defer stmt.Close()
	keyStmt, err := tx.PrepareContext(ctx, `INSERT INTO subject_keys (key, event_id, seq) VALUES (?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("prepare audit subject insert: %w", err)
	}
	defer keyStmt.Close()
	// Statements run under a context that cannot be cancelled: for one
	// that can, the driver starts a goroutine per statement to watch it. A
	// cancelled ctx still rolls the transaction back between statements
	// (database/sql), and a batch is bounded.
	qctx := context.WithoutCancel(ctx)
	events, err := s.earlierRows(qctx, tx, entries)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed { // what the batch added to its events was not kept
			for id := range events {
				delete(s.recent, id)
			}
		}
	}()
	seq, prev, msg := s.headSeq, s.headHash, s.headMsg
	indexed := time.Now().UnixMilli()
	for i := range entries {
		e := &entries[i]
		r := e.Record
		if e.Seq != seq+1 {
			return fmt.Errorf("%w: have %d, got %d", ErrGap, seq, e.Seq)
		}
		// A batch starts a message: one is indexed whole or not at all.
		if e.StreamSeq != msg+1 && (i == 0 || e.StreamSeq != msg) {
			return fmt.Errorf("%w: have message %d, got %d", ErrGap, msg, e.StreamSeq)
		}
		ev := events[r.EventID] // nil for a record of no event
		e.DuplicateOf = 0
		if ev != nil {
			if at, ok := ev.first[r.ID]; ok {
				e.DuplicateOf = at
			} else {
				ev.first[strings.Clone(r.ID)] = e.Seq
			}
		}
		hash := ChainHash(prev, e.Seq, e.Body)
		var sub Subject
		if r.Subject != nil {
			sub = *r.Subject
		}
		login, email := strings.ToLower(sub.Login), strings.ToLower(sub.Email)
		if _, err := stmt.ExecContext(qctx, e.Seq, r.ID, r.Time.UnixMilli(), string(r.Type), r.EventID, r.Source, r.Kind,
			sub.ID, login, email, r.Target, r.Outcome, indexed, e.Body, prev, hash, e.DuplicateOf, e.StreamSeq); err != nil {
			return fmt.Errorf("insert audit record %d: %w", e.Seq, err)
		}
		for _, key := range identityKeys(sub.ID, login, email) {
			if ev != nil {
				if ev.keys[key] {
					continue
				}
				ev.keys[key] = true
			}
			if _, err := keyStmt.ExecContext(qctx, key, r.EventID, e.Seq); err != nil {
				return fmt.Errorf("insert audit subject of record %d: %w", e.Seq, err)
			}
		}
		seq, prev, msg = e.Seq, hash, e.StreamSeq
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit audit batch: %w", err)
	}
	committed = true
	s.headSeq, s.headHash, s.headMsg = seq, prev, msg
	s.remember(events)
	return nil
}

// remember keeps the committed rows of events for the next batches.
func (s *Store) remember(events map[string]*eventRows) {
	if s.recentMax <= 0 {
		return
	}
	for id, ev := range events {
		if _, ok := s.recent[id]; ok {
			continue // updated in place
		}
		if len(s.ring) < s.recentMax {
			s.ring = append(s.ring, id)
		} else {
			delete(s.recent, s.ring[s.ringNext])
			s.ring[s.ringNext] = id
			s.ringNext = (s.ringNext + 1) % len(s.ring)
		}
		s.recent[id] = ev
	}
}

// lookupChunk bounds the event IDs of one lookup (SQLite allows 32,766
// parameters; the batch size allows 10,000 records).
const lookupChunk = 500

// identityKeys are the keys of subject_keys for a record's identifiers
// (login and email already lowercased), the empty ones left out.
func identityKeys(id, login, email string) []string {
	keys := make([]string, 0, 3)
	if email != "" {
		keys = append(keys, "e:"+email)
	}
	if login != "" {
		keys = append(keys, "l:"+login)
	}
	if id != "" {
		keys = append(keys, "i:"+id)
	}
	return keys
}

// earlierRows returns, for each event of entries, what its rows already
// indexed say: the seq of the first row of each record ID, and which subject
// keys the event already has in subject_keys (every identifier of every row
// of an event is keyed for it, which verify holds). Records are written
// again only by a consumer that ran again, and those records belong to an
// event: the event's few rows are where a first copy can be. Events the
// store remembers (recent) are not read again; the others are read with one
// query per batch (per lookupChunk events), not one per record.
func (s *Store) earlierRows(ctx context.Context, tx *sql.Tx, entries []Entry) (map[string]*eventRows, error) {
	events := make(map[string]*eventRows)
	var missing []any
	for _, e := range entries {
		id := e.Record.EventID
		if id == "" || events[id] != nil {
			continue
		}
		if ev := s.recent[id]; ev != nil {
			events[id] = ev
			continue
		}
		id = strings.Clone(id)
		events[id] = &eventRows{first: map[string]uint64{}, keys: map[string]bool{}}
		missing = append(missing, id)
	}
	for len(missing) > 0 {
		chunk := missing[:min(len(missing), lookupChunk)]
		missing = missing[len(chunk):]
		rows, err := tx.QueryContext(ctx, `SELECT event_id, id, seq, duplicate_of, subject_id, subject_login, subject_email FROM records WHERE event_id IN (?`+
			strings.Repeat(",?", len(chunk)-1)+`)`, chunk...)
		if err != nil {
			return nil, fmt.Errorf("audit earlier rows: %w", err)
		}
		for rows.Next() {
			var event, rid, id, login, email string
			var seq, dup uint64
			if err := rows.Scan(&event, &rid, &seq, &dup, &id, &login, &email); err != nil {
				rows.Close()
				return nil, fmt.Errorf("audit earlier rows: %w", err)
			}
			ev := events[event]
			if ev == nil {
				continue // IN compares exactly: not reached
			}
			if at, ok := ev.first[rid]; dup == 0 && (!ok || seq < at) {
				ev.first[rid] = seq
			}
			for _, k := range identityKeys(id, login, email) {
				ev.keys[k] = true
			}
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("audit earlier rows: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("audit earlier rows: %w", err)
		}
	}
	return events, nil
}

// Checkpoint truncates the WAL so that readers cannot grow it without bound.
func (s *Store) Checkpoint(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	return err
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// ownerOnly creates path with mode 0600, or takes group and other access
// away from an existing file (and its -wal and -shm companions).
func ownerOnly(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open audit db: %w", err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
				return fmt.Errorf("restrict %s: %w", p, err)
			}
		}
	}
	return nil
}
