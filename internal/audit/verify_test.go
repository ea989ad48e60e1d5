package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
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
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.Verify(context.Background(), VerifyOptions{Key: testKey.Public(), CheckpointFiles: []string{path + ".checkpoints"}})
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
		{"record deleted", []string{`DELETE FROM records WHERE seq = 5`}, 5, "missing"},
		{"two swapped", []string{
			`UPDATE records SET seq = 100 WHERE seq = 3`, `UPDATE records SET seq = 3 WHERE seq = 7`, `UPDATE records SET seq = 7 WHERE seq = 100`,
		}, 3, "does not link"},
		{"first record deleted", []string{`DELETE FROM records WHERE seq = 1`}, 1, "missing"},
		// Cutting off the tail leaves a whole chain; the checkpoint that
		// signed record 10 shows it (from the index, or from the file when
		// the index's checkpoints were cut too).
		{"tail cut", []string{`DELETE FROM records WHERE seq > 7`}, 8, "missing: a checkpoint"},
		{"tail and checkpoints cut", []string{`DELETE FROM records WHERE seq > 7`, `DELETE FROM checkpoints`}, 8, "missing: a checkpoint"},
		{"checkpoint forged", []string{`UPDATE checkpoints SET signature = zeroblob(64)`}, 10, "signature does not verify"},
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
