package main

import (
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// Jobs still pending when the process stops complete after a restart on the
// same data dir, and the audit trail has every record exactly once, in one
// unbroken hash chain.
func TestRestartCompletesPendingJobs(t *testing.T) {
	// A target that answers two requests and then hangs, worked one job
	// at a time per target: when we stop, two requests are in flight and
	// the other jobs are still waiting in the stream.
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL, HoldAfter: 2})
	defer peer.Close()
	dir := t.TempDir()
	targets := gtrTarget("as1", peer.URL, "email") + gtrTarget("as2", peer.URL, "email")
	targets = strings.ReplaceAll(targets, "backoff: [20ms]", "backoff: [20ms]\n    concurrency: 1")
	var users []string
	for i := range 12 {
		users = append(users, fmt.Sprintf("u%d@example.com", i))
	}

	w := startWorker(t, testConfig(t, dir, targets))
	setJWKS(peer, w)
	if resp := w.postHook(deactivation("r1", users...), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	eventually(t, 30*time.Second, "the first revocations", func() bool {
		return len(w.audit(audit.Filter{Type: string(audit.TypeRevocationSucceeded)})) == 2
	})
	if err := w.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	before := len(readAudit(t, w.inst.cfg.Audit.DB, audit.Filter{Type: string(audit.TypeRevocationSucceeded)}))
	if before >= len(users)*2 {
		t.Fatalf("all %d jobs finished before the stop; the test proves nothing", before)
	}
	t.Logf("%d of %d jobs done at stop", before, len(users)*2)

	peer.Release()
	w2 := startWorker(t, testConfig(t, dir, targets))
	setJWKS(peer, w2)
	eventually(t, 90*time.Second, "every job to succeed after the restart", func() bool {
		return len(w2.audit(audit.Filter{Type: string(audit.TypeRevocationSucceeded)})) == len(users)*2
	})
	w2.idle(30 * time.Second)

	for i, r := range w2.audit(audit.Filter{Repeats: true}) {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d: the index has a gap", i+1, r.Seq)
		}
	}
	recs := w2.audit(audit.Filter{})
	ids := map[string]int{}
	for _, r := range recs {
		ids[r.ID]++
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("record %s is in the trail %d times", id, n)
		}
	}
	c := countTypes(recs)
	if c[audit.TypeEventReceived] != len(users) || c[audit.TypeRevocationPlanned] != len(users) || c[audit.TypeRevocationSucceeded] != len(users)*2 {
		t.Errorf("record counts %v", c)
	}
	if rej := peer.Rejected(); len(rej) > 0 {
		t.Errorf("receiver rejected: %v", rej)
	}
	for _, u := range users {
		if got := peer.Succeeded()[u]; got < 2 {
			t.Errorf("%s revoked %d times, want at each of 2 targets", u, got)
		}
	}
	verifyChain(t, w2.inst.cfg.Audit.DB)
}

// verifyChain recomputes the hash chain over the index.
func verifyChain(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT seq, body, prev_hash, hash FROM records ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	prev := make([]byte, sha256.Size)
	n := 0
	for rows.Next() {
		var seq uint64
		var body, ph, h []byte
		if err := rows.Scan(&seq, &body, &ph, &h); err != nil {
			t.Fatal(err)
		}
		var rec audit.Record
		if err := json.Unmarshal(body, &rec); err != nil {
			t.Fatalf("record %d: body does not decode (%v)", seq, err)
		}
		if fmt.Sprintf("%x", ph) != fmt.Sprintf("%x", prev) || fmt.Sprintf("%x", audit.ChainHash(prev, seq, body)) != fmt.Sprintf("%x", h) {
			t.Fatalf("chain broken at seq %d", seq)
		}
		prev = h
		n++
	}
	if n == 0 {
		t.Fatal("empty chain")
	}
}
