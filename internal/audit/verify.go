package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Problem is the first thing wrong with an index.
type Problem struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

func (p *Problem) Error() string { return fmt.Sprintf("record %d: %s", p.Seq, p.Reason) }

// VerifyOptions adds the checks that need something from outside the index.
type VerifyOptions struct {
	// Key checks the signatures of checkpoints; nil skips checkpoints.
	Key ed25519.PublicKey
	// CheckpointFiles are copies of checkpoints kept outside the index (the
	// worker's checkpoint file, or one exported to a SIEM).
	CheckpointFiles []string
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Records     uint64 `json:"records"`
	HeadSeq     uint64 `json:"head_seq"`
	Head        string `json:"head_hash"` // hex
	Checkpoints int    `json:"checkpoints_checked"`
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
	var last uint64
	for {
		n, err := r.verifyChunk(ctx, last, &prev, &res)
		if err != nil || res.Problem != nil {
			return res, err
		}
		if n < verifyChunk {
			break
		}
		last = res.HeadSeq
	}
	res.Head = fmt.Sprintf("%x", prev)
	if opts.Key == nil {
		return res, nil
	}
	cs, err := r.Checkpoints(ctx)
	if err != nil {
		return res, err
	}
	if res.Problem, err = r.checkCheckpoints(ctx, cs, opts.Key, res.HeadSeq, "index"); err != nil || res.Problem != nil {
		return res, err
	}
	res.Checkpoints += len(cs)
	for _, f := range opts.CheckpointFiles {
		cs, err := ReadCheckpointFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return res, err
		}
		if res.Problem, err = r.checkCheckpoints(ctx, cs, opts.Key, res.HeadSeq, f); err != nil || res.Problem != nil {
			return res, err
		}
		res.Checkpoints += len(cs)
	}
	return res, nil
}

func (r *Reader) verifyChunk(ctx context.Context, after uint64, prev *[]byte, res *VerifyResult) (int, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT seq, id, time_ms, type, event_id, target, outcome, subject_email, body, prev_hash, hash
		FROM records WHERE seq > ? ORDER BY seq LIMIT ?`, after, verifyChunk)
	if err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
		var seq uint64
		var timeMS int64
		var id, typ, eventID, target, outcome, email string
		var body, prevHash, hash []byte
		if err := rows.Scan(&seq, &id, &timeMS, &typ, &eventID, &target, &outcome, &email, &body, &prevHash, &hash); err != nil {
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
		}
		var rec Record
		if json.Unmarshal(body, &rec) == nil {
			var recEmail string
			if rec.Subject != nil {
				recEmail = strings.ToLower(rec.Subject.Email)
			}
			if rec.ID != id || string(rec.Type) != typ || rec.Time.UnixMilli() != timeMS || rec.EventID != eventID ||
				rec.Target != target || rec.Outcome != outcome || recEmail != email {
				return bad("query columns differ from the record")
			}
		}
		*prev = hash
		res.HeadSeq = seq
		res.Records++
	}
	return n, rows.Err()
}
