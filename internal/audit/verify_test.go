package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tamperable builds an index of n records and returns its path.
func tamperable(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := OpenStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	for i := 1; i <= n; i++ {
		entries = append(entries, rec(t, uint64(i), TypeRevocationSucceeded, "jane@example.com", "as1"))
	}
	if err := s.Append(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCheckpoint(context.Background(), NewCheckpoint(s.Head(), time.Now(), testKey), path+".checkpoints"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return path
}

var testKey = func() *edKey {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	return &edKey{priv}
}()

type edKey struct{ priv ed25519.PrivateKey }

func (k *edKey) Sign(msg []byte) []byte    { return ed25519.Sign(k.priv, msg) }
func (k *edKey) KeyID() string             { return "test" }
func (k *edKey) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

func verify(t *testing.T, path string) VerifyResult {
	t.Helper()
	return verifyWith(t, path, VerifyOptions{Keys: []ed25519.PublicKey{testKey.Public()}, CheckpointFiles: []string{path + ".checkpoints"}})
}

func verifyWith(t *testing.T, path string, opts VerifyOptions) VerifyResult {
	t.Helper()
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.Verify(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func exec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestVerifyNamesTheFirstBadRecord(t *testing.T) {
	if res := verify(t, tamperable(t, 10)); res.Problem != nil || res.Records != 10 || res.HeadSeq != 10 {
		t.Fatalf("untouched index: %+v", res)
	}
	for _, c := range []struct {
		name    string
		tamper  []string
		wantSeq uint64
		reason  string
	}{
		{"record changed", []string{`UPDATE records SET body = replace(body, 'as1', 'as9') WHERE seq = 4`}, 4, "hash does not match"},
		{"column changed", []string{`UPDATE records SET outcome = 'succeeded!' WHERE seq = 6`}, 6, "columns differ"},
		{"subject column changed", []string{`UPDATE records SET subject_login = 'eve@example.com' WHERE seq = 6`}, 6, "columns differ"},
		{"record deleted", []string{`DELETE FROM records WHERE seq = 5`}, 5, "missing"},
		// Subject queries go through subject_keys, which the chain does not
		// cover: a key deleted would hide Jane's records, one added would
		// show them as Eve's.
		{"subject key deleted", []string{`DELETE FROM subject_keys WHERE event_id = 'okta:e1' AND key LIKE 'e:%'`}, 1, "email is not in subject_keys"},
		{"subject key moved", []string{`UPDATE subject_keys SET event_id = 'okta:e0' WHERE event_id = 'okta:e2'`}, 2, "not in subject_keys"},
		{"subject key added", []string{`INSERT INTO subject_keys VALUES ('e:eve@example.com', 'okta:e2', 5)`}, 5, "names this record for a subject"},
		{"two swapped", []string{
			`UPDATE records SET seq = 100 WHERE seq = 3`, `UPDATE records SET seq = 3 WHERE seq = 7`, `UPDATE records SET seq = 7 WHERE seq = 100`,
		}, 3, "does not link"},
		{"first record deleted", []string{`DELETE FROM records WHERE seq = 1`}, 1, "missing"},
		// Cutting off the tail leaves a whole chain; the checkpoint that
		// signed record 10 shows it (from the index, or from the file when
		// the index's checkpoints were cut too).
		{"tail cut", []string{`DELETE FROM records WHERE seq > 7`}, 8, "missing: a checkpoint"},
		{"tail and checkpoints cut", []string{`DELETE FROM records WHERE seq > 7`, `DELETE FROM checkpoints`}, 8, "missing: a checkpoint"},
		{"checkpoint forged", []string{`UPDATE checkpoints SET signature = zeroblob(64)`}, 10, "not signed by the pinned key"},
		// The indexer resumes after the head's message: moving it on would
		// leave the messages between unindexed.
		{"message skipped", []string{`UPDATE records SET stream_seq = 12 WHERE seq = 10`}, 10, "stream_seq skips"},
		{"message moved back", []string{`UPDATE records SET stream_seq = 3 WHERE seq = 6`}, 6, "stream_seq skips"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := tamperable(t, 10)
			exec(t, path, c.tamper...)
			res := verify(t, path)
			if res.Problem == nil || res.Problem.Seq != c.wantSeq || !strings.Contains(res.Problem.Reason, c.reason) {
				t.Errorf("problem %+v, want record %d: %s", res.Problem, c.wantSeq, c.reason)
			}
		})
	}
}

// rewrite is what a local attacker does: change record seq, recompute the
// chain from there, and delete every checkpoint (index and file); with
// rekey, they also sign fresh checkpoints of the new head with a key of
// their own.
func rewrite(t *testing.T, path string, seq uint64, rekey bool) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE records SET body = CAST(replace(body, 'as1', 'as9') AS BLOB), target = 'as9' WHERE seq = ?`, seq); err != nil {
		t.Fatal(err)
	}
	var prev []byte
	if err := db.QueryRow(`SELECT prev_hash FROM records WHERE seq = ?`, seq).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT seq, body FROM records WHERE seq >= ? ORDER BY seq`, seq)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		seq  uint64
		body []byte
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.seq, &r.body); err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
	}
	rows.Close()
	var head Head
	for _, r := range all {
		h := ChainHash(prev, r.seq, r.body)
		if _, err := db.Exec(`UPDATE records SET prev_hash = ?, hash = ? WHERE seq = ?`, prev, h, r.seq); err != nil {
			t.Fatal(err)
		}
		prev, head = h, Head{Seq: r.seq, Hash: h}
	}
	if _, err := db.Exec(`DELETE FROM checkpoints`); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path + ".checkpoints"); err != nil {
		t.Fatal(err)
	}
	if rekey {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		s, err := OpenStore(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.AddCheckpoint(context.Background(), NewCheckpoint(head, time.Now(), &edKey{priv}), path+".checkpoints"); err != nil {
			t.Fatal(err)
		}
	}
}

// Someone who can write the index cannot make a rewritten trail verify: the
// chain is whole again, but with the checkpoints gone nothing pins it, and
// checkpoints they sign themselves are not signed by the pinned key. A
// head far past the newest checkpoint (newer ones deleted) fails too.
func TestVerifyWithAPinnedKeyCatchesALocalRewrite(t *testing.T) {
	path := tamperable(t, 10)
	rewrite(t, path, 4, false)
	if res := verify(t, path); res.Problem == nil || res.Problem.Seq != 1 || !strings.Contains(res.Problem.Reason, "no signed checkpoint") {
		t.Errorf("rewritten, checkpoints deleted: %+v", res.Problem)
	}
	path = tamperable(t, 10)
	rewrite(t, path, 4, true)
	if res := verify(t, path); res.Problem == nil || !strings.Contains(res.Problem.Reason, "not signed by the pinned key") {
		t.Errorf("rewritten and re-signed with another key: %+v", res.Problem)
	}

	// Older checkpoints kept, the newer ones deleted: the head runs ahead.
	path = tamperable(t, 10)
	s, err := OpenStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	var more []Entry
	for i := 11; i <= 30; i++ {
		more = append(more, rec(t, uint64(i), TypeRevocationSucceeded, "jane@example.com", "as1"))
	}
	if err := s.Append(context.Background(), more); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	opts := VerifyOptions{Keys: []ed25519.PublicKey{testKey.Public()}, CheckpointFiles: []string{path + ".checkpoints"},
		MaxUncovered: 15, MaxUncoveredAge: 100000 * time.Hour, Now: time.Now()}
	if res, err := r.Verify(context.Background(), opts); err != nil || res.Problem == nil || res.Problem.Seq != 11 || !strings.Contains(res.Problem.Reason, "20 records behind") {
		t.Errorf("head 20 records past the newest checkpoint: %+v %v", res.Problem, err)
	}
	opts.MaxUncovered, opts.MaxUncoveredAge = 100, time.Hour // the records are from 2024
	if res, err := r.Verify(context.Background(), opts); err != nil || res.Problem == nil || !strings.Contains(res.Problem.Reason, "no checkpoint signs them") {
		t.Errorf("uncovered records older than allowed: %+v %v", res.Problem, err)
	}
	opts.MaxUncoveredAge = 100000 * time.Hour
	if res, err := r.Verify(context.Background(), opts); err != nil || res.Problem != nil {
		t.Errorf("a recent uncovered tail within the limits: %+v %v", res.Problem, err)
	}
	opts.Keys = []ed25519.PublicKey{func() ed25519.PublicKey { p, _, _ := ed25519.GenerateKey(rand.Reader); return p }()}
	if res, err := r.Verify(context.Background(), opts); err != nil || res.Problem == nil || !strings.Contains(res.Problem.Reason, "pinned") {
		t.Errorf("another pinned key: %+v %v", res.Problem, err)
	}
}
