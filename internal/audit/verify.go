package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Problem is the first thing wrong with an index.
type Problem struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

func (p *Problem) Error() string { return fmt.Sprintf("record %d: %s", p.Seq, p.Reason) }

// VerifyOptions adds the checks that need something from outside the index.
type VerifyOptions struct {
	// Keys are the pinned public keys checkpoints must be signed with: held
	// by the verifier, never read from the machine that writes the trail.
	// None: only the chain is checked, which proves nothing against anyone
	// who can write the index (they can recompute it).
	Keys []ed25519.PublicKey
	// CheckpointFiles are copies of checkpoints kept outside the index (the
	// worker's checkpoint file, or one exported to a SIEM).
	CheckpointFiles []string
	// With Keys: the head may run at most MaxUncovered records, and its
	// first uncovered record at most MaxUncoveredAge (at Now), ahead of the
	// newest checkpoint; past that a checkpoint is missing (deleted, or the
	// worker stopped signing). Zero: no limit.
	MaxUncovered    uint64
	MaxUncoveredAge time.Duration
	Now             time.Time
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Records     uint64 `json:"records"`
	HeadSeq     uint64 `json:"head_seq"`
	Head        string `json:"head_hash"` // hex
	Checkpoints int    `json:"checkpoints_checked"`
	// NewestCheckpoint is the seq of the newest valid checkpoint (0: none).
	NewestCheckpoint uint64 `json:"newest_checkpoint"`
	// Problem is nil when the chain is whole.
	Problem *Problem `json:"problem,omitempty"`
}

// verifyChunk bounds one read transaction, so that a long verification
// does not keep the WAL from being checkpointed (reference: ~50k rows).
const verifyChunk = 50000

// Verify recomputes the hash chain over the whole index, in chunks, and
// checks that sequences are contiguous from 1, that each row links to the one
// before, that each hash covers its bytes, and that the query columns say
// what the bytes say; then it holds every signed checkpoint, in the index and
// in the given files, against the chain. It stops at the first problem.
func (r *Reader) Verify(ctx context.Context, opts VerifyOptions) (VerifyResult, error) {
	var res VerifyResult
	prev := make([]byte, sha256.Size)
	var last, msg uint64
	var err error
	for {
		var n int
		n, err = r.verifyChunk(ctx, last, &prev, &msg, &res)
		if err != nil || res.Problem != nil {
			return res, err
		}
		if n < verifyChunk {
			break
		}
		last = res.HeadSeq
	}
	res.Head = fmt.Sprintf("%x", prev)
	if res.Problem, err = r.checkRepeats(ctx); err != nil || res.Problem != nil {
		return res, err
	}
	if res.Problem, err = r.checkSubjects(ctx); err != nil || res.Problem != nil {
		return res, err
	}
	if len(opts.Keys) == 0 {
		return res, nil
	}
	cs, err := r.Checkpoints(ctx)
	if err != nil {
		return res, err
	}
	if res.Problem, err = r.checkCheckpoints(ctx, cs, opts.Keys, res.HeadSeq, "index"); err != nil || res.Problem != nil {
		return res, err
	}
	newest := func(cs []Checkpoint) {
		res.Checkpoints += len(cs)
		for _, c := range cs {
			res.NewestCheckpoint = max(res.NewestCheckpoint, c.Seq)
		}
	}
	newest(cs)
	for _, f := range opts.CheckpointFiles {
		cs, err := ReadCheckpointFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return res, err
		}
		if res.Problem, err = r.checkCheckpoints(ctx, cs, opts.Keys, res.HeadSeq, f); err != nil || res.Problem != nil {
			return res, err
		}
		newest(cs)
	}
	res.Problem, err = r.checkCoverage(ctx, res, opts)
	return res, err
}

// checkRepeats holds the duplicate_of column, which queries trust and the
// chain does not cover, against the rows: a row marked as a repeat must
// name an earlier first row with the same event and record ID, and a row
// not marked must have no such earlier row. Marking a record a repeat would
// otherwise hide it from every query with the chain intact.
func (r *Reader) checkRepeats(ctx context.Context) (*Problem, error) {
	return r.firstProblem(ctx, []rowCheck{
		{`SELECT a.seq FROM records a WHERE a.duplicate_of <> 0 AND NOT EXISTS
			(SELECT 1 FROM records b WHERE b.seq = a.duplicate_of AND b.seq < a.seq AND b.event_id = a.event_id AND b.id = a.id AND b.duplicate_of = 0)
			ORDER BY a.seq LIMIT 1`, "marked as a repeat of a record it does not repeat (hidden from queries)"},
		{`SELECT a.seq FROM records a WHERE a.duplicate_of = 0 AND a.event_id <> '' AND EXISTS
			(SELECT 1 FROM records b WHERE b.event_id = a.event_id AND b.id = a.id AND b.seq < a.seq)
			ORDER BY a.seq LIMIT 1`, "repeats an earlier record but is not marked as a repeat"},
	})
}

// rowCheck is a query for the first row (its seq) that has a problem, and
// the problem.
type rowCheck struct{ query, reason string }

// firstProblem runs checks in order and returns the first problem found.
func (r *Reader) firstProblem(ctx context.Context, checks []rowCheck) (*Problem, error) {
	for _, c := range checks {
		var seq uint64
		switch err := r.db.QueryRowContext(ctx, c.query).Scan(&seq); {
		case err == nil:
			return &Problem{Seq: seq, Reason: c.reason}, nil
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("verify: %w", err)
		}
	}
	return nil, nil
}

// checkSubjects holds subject_keys, which subject queries go through and
// the chain does not cover, against the rows (whose subject columns the
// chunks held against the records): every identifier a row carries must be
// keyed for its event (for the row itself, when it has none) — a key
// deleted would hide the subject's records from queries with the chain
// intact — and every key must name a row of its event that carries it — a
// key added would show another person's records as the subject's.
func (r *Reader) checkSubjects(ctx context.Context) (*Problem, error) {
	const keyed = `SELECT r.seq FROM records r WHERE r.%[1]s <> '' AND NOT EXISTS
		(SELECT 1 FROM subject_keys k WHERE k.key = '%[2]s:' || r.%[1]s AND k.event_id = r.event_id AND (r.event_id <> '' OR k.seq = r.seq))
		ORDER BY r.seq LIMIT 1`
	return r.firstProblem(ctx, []rowCheck{
		{fmt.Sprintf(keyed, "subject_email", "e"), "its subject's email is not in subject_keys for its event (hidden from subject queries)"},
		{fmt.Sprintf(keyed, "subject_login", "l"), "its subject's login is not in subject_keys for its event (hidden from subject queries)"},
		{fmt.Sprintf(keyed, "subject_id", "i"), "its subject's id is not in subject_keys for its event (hidden from subject queries)"},
		{`SELECT k.seq FROM subject_keys k WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.seq = k.seq AND r.event_id = k.event_id AND
			((r.subject_email <> '' AND k.key = 'e:' || r.subject_email) OR (r.subject_login <> '' AND k.key = 'l:' || r.subject_login) OR
			 (r.subject_id <> '' AND k.key = 'i:' || r.subject_id)))
			ORDER BY k.seq LIMIT 1`, "subject_keys names this record for a subject or event it does not carry (another's records shown as the subject's)"},
	})
}

// checkCoverage fails a trail whose head no signed checkpoint pins: the
// chain alone can be recomputed by whoever rewrites the index, so records
// past the newest checkpoint are only as good as the time the worker had to
// sign them.
func (r *Reader) checkCoverage(ctx context.Context, res VerifyResult, opts VerifyOptions) (*Problem, error) {
	if res.HeadSeq == 0 || res.NewestCheckpoint >= res.HeadSeq {
		return nil, nil
	}
	first := res.NewestCheckpoint + 1
	if res.NewestCheckpoint == 0 {
		return &Problem{Seq: first, Reason: fmt.Sprintf("no signed checkpoint: nothing pins the %d records of this trail (checkpoints deleted, or none ever made)", res.Records)}, nil
	}
	uncovered := res.HeadSeq - res.NewestCheckpoint
	if opts.MaxUncovered > 0 && uncovered > opts.MaxUncovered {
		return &Problem{Seq: first, Reason: fmt.Sprintf("stale checkpoints: the newest signs record %d, %d records behind the head (the worker signs every %d)",
			res.NewestCheckpoint, uncovered, opts.MaxUncovered)}, nil
	}
	if opts.MaxUncoveredAge <= 0 {
		return nil, nil
	}
	var ms int64
	if err := r.db.QueryRowContext(ctx, `SELECT time_ms FROM records WHERE seq = ?`, first).Scan(&ms); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if age := opts.Now.Sub(time.UnixMilli(ms)); age > opts.MaxUncoveredAge {
		return &Problem{Seq: first, Reason: fmt.Sprintf("stale checkpoints: records %d..%d are %s old and no checkpoint signs them (allowed: %s)",
			first, res.HeadSeq, age.Round(time.Second), opts.MaxUncoveredAge)}, nil
	}
	return nil, nil
}

// verifyChunk checks the rows after seq after, continuing the chain at
// prev and the AUDIT messages at msg.
func (r *Reader) verifyChunk(ctx context.Context, after uint64, prev *[]byte, msg *uint64, res *VerifyResult) (int, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT seq, id, time_ms, type, event_id, target, outcome, subject_id, subject_login, subject_email, body, prev_hash, hash, stream_seq
		FROM records WHERE seq > ? ORDER BY seq LIMIT ?`, after, verifyChunk)
	if err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
		var seq, streamSeq uint64
		var timeMS int64
		var id, typ, eventID, target, outcome, subID, login, email string
		var body, prevHash, hash []byte
		if err := rows.Scan(&seq, &id, &timeMS, &typ, &eventID, &target, &outcome, &subID, &login, &email, &body, &prevHash, &hash, &streamSeq); err != nil {
			return n, fmt.Errorf("verify: %w", err)
		}
		bad := func(format string, args ...any) (int, error) {
			res.Problem = &Problem{Seq: seq, Reason: fmt.Sprintf(format, args...)}
			return n, nil
		}
		switch {
		case seq != res.HeadSeq+1:
			res.Problem = &Problem{Seq: res.HeadSeq + 1, Reason: fmt.Sprintf("missing: the next record is %d", seq)}
			return n, nil
		case !bytes.Equal(prevHash, *prev):
			return bad("does not link to record %d (prev_hash differs)", res.HeadSeq)
		case !bytes.Equal(hash, ChainHash(*prev, seq, body)):
			return bad("hash does not match its contents")
		case streamSeqOf(seq, streamSeq) != *msg && streamSeqOf(seq, streamSeq) != *msg+1:
			// Not chained, but where the indexer resumes: a jump would
			// leave the messages between unindexed.
			return bad("came in AUDIT message %d, after message %d (stream_seq skips)", streamSeqOf(seq, streamSeq), *msg)
		}
		var rec Record
		if json.Unmarshal(body, &rec) == nil {
			var sub Subject
			if rec.Subject != nil {
				sub = *rec.Subject
			}
			if rec.ID != id || string(rec.Type) != typ || rec.Time.UnixMilli() != timeMS || rec.EventID != eventID ||
				rec.Target != target || rec.Outcome != outcome ||
				sub.ID != subID || strings.ToLower(sub.Login) != login || strings.ToLower(sub.Email) != email {
				return bad("query columns differ from the record")
			}
		}
		*prev, *msg = hash, streamSeqOf(seq, streamSeq)
		res.HeadSeq = seq
		res.Records++
	}
	return n, rows.Err()
}
