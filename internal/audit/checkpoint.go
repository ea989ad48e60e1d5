package audit

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"
)

// Checkpoint is a signed statement: "the record at Seq has chain hash Hash",
// made at Time. Anyone with the public key (in our JWKS) can check it, and a
// copy kept elsewhere pins the trail up to Seq.
type Checkpoint struct {
	Seq       uint64    `json:"seq"`
	Hash      string    `json:"hash"` // hex
	Time      time.Time `json:"time"`
	KeyID     string    `json:"kid"`
	Signature []byte    `json:"signature"` // Ed25519 over Message()
}

// Message is the signed text.
func (c Checkpoint) Message() []byte {
	return []byte("lifecycle-worker audit checkpoint\n" + strconv.FormatUint(c.Seq, 10) + "\n" + c.Hash + "\n" +
		c.Time.UTC().Format(time.RFC3339Nano) + "\n")
}

// Verify checks the signature.
func (c Checkpoint) Verify(pub ed25519.PublicKey) bool {
	return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, c.Message(), c.Signature)
}

// CheckpointSigner signs checkpoints.
type CheckpointSigner interface {
	Sign(msg []byte) []byte
	KeyID() string
}

// NewCheckpoint signs the head.
func NewCheckpoint(h Head, now time.Time, k CheckpointSigner) Checkpoint {
	c := Checkpoint{Seq: h.Seq, Hash: hex.EncodeToString(h.Hash), Time: now.UTC().Truncate(time.Millisecond), KeyID: k.KeyID()}
	c.Signature = k.Sign(c.Message())
	return c
}

// AddCheckpoint stores c in the index and appends it to file ("" = none),
// synced, so that it survives a crash of this process.
func (s *Store) AddCheckpoint(ctx context.Context, c Checkpoint, file string) error {
	hash, err := hex.DecodeString(c.Hash)
	if err != nil {
		return fmt.Errorf("checkpoint hash: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO checkpoints (seq, hash, time_ms, kid, signature) VALUES (?, ?, ?, ?, ?)`,
		c.Seq, hash, c.Time.UnixMilli(), c.KeyID, c.Signature); err != nil {
		return fmt.Errorf("store checkpoint: %w", err)
	}
	if file == "" {
		return nil
	}
	line, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("checkpoint file: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("checkpoint file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("checkpoint file: %w", err)
	}
	return f.Close()
}

// Checkpoints returns the index's checkpoints, oldest first.
func (r *Reader) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT seq, hash, time_ms, kid, signature FROM checkpoints ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var c Checkpoint
		var hash []byte
		var ms int64
		if err := rows.Scan(&c.Seq, &hash, &ms, &c.KeyID, &c.Signature); err != nil {
			return nil, err
		}
		c.Hash, c.Time = hex.EncodeToString(hash), time.UnixMilli(ms).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// LatestCheckpoint returns the newest checkpoint, or nil.
func (r *Reader) LatestCheckpoint(ctx context.Context) (*Checkpoint, error) {
	cs, err := r.Checkpoints(ctx)
	if err != nil || len(cs) == 0 {
		return nil, err
	}
	return &cs[len(cs)-1], nil
}

// ReadCheckpointFile reads a JSONL checkpoint file.
func ReadCheckpointFile(path string) ([]Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Checkpoint
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		var c Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

// checkCheckpoints holds each checkpoint against the index: a valid
// signature, and the record at its seq carrying its hash. A checkpoint past
// the head means the tail was cut off.
func (r *Reader) checkCheckpoints(ctx context.Context, cs []Checkpoint, keys []ed25519.PublicKey, head uint64, where string) (*Problem, error) {
	for _, c := range cs {
		if !slices.ContainsFunc(keys, c.Verify) {
			return &Problem{Seq: c.Seq, Reason: fmt.Sprintf("checkpoint (%s, kid %s) is not signed by the pinned key", where, c.KeyID)}, nil
		}
		if c.Seq > head {
			return &Problem{Seq: head + 1, Reason: fmt.Sprintf("missing: a checkpoint (%s) signed record %d, the index ends at %d", where, c.Seq, head)}, nil
		}
		if c.Seq == 0 {
			continue
		}
		var hash []byte
		err := r.db.QueryRowContext(ctx, `SELECT hash FROM records WHERE seq = ?`, c.Seq).Scan(&hash)
		if errors.Is(err, sql.ErrNoRows) {
			return &Problem{Seq: c.Seq, Reason: fmt.Sprintf("missing: checkpointed (%s) record is gone", where)}, nil
		}
		if err != nil {
			return nil, err
		}
		if hex.EncodeToString(hash) != c.Hash {
			return &Problem{Seq: c.Seq, Reason: fmt.Sprintf("chain hash differs from the signed checkpoint (%s)", where)}, nil
		}
	}
	return nil, nil
}

func (s *Store) lastCheckpointSeq(ctx context.Context) (uint64, error) {
	var seq uint64
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM checkpoints`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read checkpoints: %w", err)
	}
	return seq, nil
}
