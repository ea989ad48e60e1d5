package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// A mass deactivation of 2,000 users across 5 targets, processed by a
// worker process that is killed with SIGKILL 5 times at random moments and
// restarted each time, ends with every (user, target) pair revoked, one
// revocation.succeeded per pair, and a hash chain that verifies.
func TestSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the worker and kills it")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "lifecycle-worker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	receivers := make([]*gtrtest.Receiver, 5)
	var targets strings.Builder
	for i := range receivers {
		receivers[i] = gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
		defer receivers[i].Close()
		fmt.Fprintf(&targets, "  - { name: as%d, driver: gtr, endpoint: %q, allow_insecure_http: true, timeout: 5s, backoff: [50ms], max_attempts: 100 }\n", i, receivers[i].URL)
	}
	addr := freeAddr(t)
	natsAddr := freeAddr(t)
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := writeFile(cfgFile, fmt.Sprintf(`data_dir: %s
listen: %s
public_url: %s
log: { level: warn }
nats: { listen: %s, users: [ { name: monitor-1, password: %q, roles: [monitor] } ] }
okta:
  org_url: %s
  hook: { secrets: [%q] }
targets:
%s`, filepath.Join(dir, "data"), addr, testPublicURL, natsAddr, monitorPassword, testOktaOrg, testHookSecret, targets.String())); err != nil {
		t.Fatal(err)
	}
	for _, r := range receivers {
		r.SetJWKSURL("http://" + addr + "/.well-known/jwks.json")
	}

	var logs bytes.Buffer
	var logMu sync.Mutex
	t.Cleanup(func() {
		if t.Failed() {
			logMu.Lock()
			t.Log("worker log:\n" + logs.String())
			logMu.Unlock()
		}
	})
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--config", cfgFile)
		cmd.Stderr = &lockedWriter{w: &logs, mu: &logMu}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the worker to serve", func() bool {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		return cmd
	}
	cmd := start()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	// Okta's side: every delivery is sent until it is answered 200.
	us := users("crash", 2000)
	var sent atomic.Int32
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		client := &http.Client{Timeout: 5 * time.Second}
		for i := 0; i < len(us); i += 50 {
			body := deactivation(fmt.Sprintf("crash-%d", i), us[i:min(i+50, len(us))]...)
			for {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+addr+"/hooks/okta", bytes.NewReader(body))
				req.Header.Set("Authorization", testHookSecret)
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
				}
				time.Sleep(20 * time.Millisecond) // Okta's retry, much sooner
			}
			sent.Add(1)
		}
	}()

	confirmed := func() int {
		n := 0
		for _, r := range receivers {
			n += r.SucceededSubjects()
		}
		return n
	}
	want := len(us) * len(receivers)
	for k, at := range []float64{0.05, 0.25, 0.45, 0.65, 0.85} {
		// Kill at a random moment around each point of progress.
		threshold := int(at*float64(want)) + rand.IntN(want/20)
		eventually(t, 120*time.Second, fmt.Sprintf("progress before kill %d", k+1), func() bool { return confirmed() >= threshold })
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		t.Logf("kill %d at %d of %d confirmed, %d of 40 deliveries accepted", k+1, confirmed(), want, sent.Load())
		cmd = start()
	}
	<-senderDone
	for deadline := time.Now().Add(90 * time.Second); confirmed() < want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			dumpConsumers(t, "nats://"+natsAddr)
			for i, r := range receivers {
				t.Logf("as%d confirmed %d", i, r.SucceededSubjects())
			}
			t.Fatalf("only %d of %d pairs revoked", confirmed(), want)
		}
	}
	for _, r := range receivers {
		if rej := r.Rejected(); len(rej) > 0 {
			t.Fatalf("receiver rejected requests: %v", rej[:min(3, len(rej))])
		}
	}
	db := filepath.Join(dir, "data", "audit.db")
	eventually(t, 60*time.Second, "every revocation on record", func() bool { return countSucceeded(t, db) >= want })
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}

	sqldb, err := sql.Open("sqlite3", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	// A kill can make a consumer write a record again; the index keeps the
	// copy (the chain covers every message) marked as a repeat, and every
	// query reads first rows only.
	var pairs, records, dupes, repeats int
	if err := sqldb.QueryRow(`SELECT count(DISTINCT event_id || '|' || target), count(*) FROM records WHERE type = 'revocation.succeeded' AND duplicate_of = 0`).Scan(&pairs, &records); err != nil {
		t.Fatal(err)
	}
	if err := sqldb.QueryRow(`SELECT count(*) FROM (SELECT id FROM records WHERE duplicate_of = 0 GROUP BY id HAVING count(*) > 1)`).Scan(&dupes); err != nil {
		t.Fatal(err)
	}
	if err := sqldb.QueryRow(`SELECT count(*) FROM records WHERE duplicate_of <> 0`).Scan(&repeats); err != nil {
		t.Fatal(err)
	}
	byType := map[string]int{}
	if rows, err := sqldb.Query(`SELECT type, count(*) FROM records WHERE duplicate_of <> 0 GROUP BY type`); err == nil {
		for rows.Next() {
			var typ string
			var n int
			if rows.Scan(&typ, &n) == nil {
				byType[typ] = n
			}
		}
		rows.Close()
	}
	t.Logf("%d records written again after a kill, marked as repeats: %v", repeats, byType)
	if pairs != want || records != want || dupes != 0 {
		t.Errorf("%d pairs, %d revocation.succeeded records, %d record ids more than once among first rows; want %d, %d, 0", pairs, records, dupes, want, want)
	}
	var out, errb bytes.Buffer
	if code := cli([]string{"audit", "verify", "--config", cfgFile, "--public-key", pinnedKey(t, filepath.Join(dir, "data"))}, &out, &errb); code != 0 {
		t.Errorf("audit verify after the kills: exit %d %s %s", code, out.String(), errb.String())
	}
	t.Log(strings.TrimSpace(out.String()))
}

func countSucceeded(t *testing.T, db string) int {
	t.Helper()
	sqldb, err := sql.Open("sqlite3", "file:"+db+"?mode=ro")
	if err != nil {
		return 0
	}
	defer sqldb.Close()
	var n int
	if err := sqldb.QueryRow(`SELECT count(*) FROM records WHERE type = 'revocation.succeeded' AND duplicate_of = 0`).Scan(&n); err != nil {
		return 0
	}
	return n
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// dumpConsumers logs every consumer's state, to see where work is stuck.
func dumpConsumers(t *testing.T, url string) {
	nc, err := nats.Connect(url, nats.UserInfo("monitor-1", monitorPassword), nats.CustomInboxPrefix("_INBOX_monitor-1"))
	if err != nil {
		t.Logf("dump: %v", err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{"LIFECYCLE", "REVOKE", "REVOKE_DLQ", "AUDIT"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Logf("dump %s: %v", name, err)
			continue
		}
		si, _ := s.Info(ctx)
		t.Logf("stream %s: msgs %d first %d last %d", name, si.State.Msgs, si.State.FirstSeq, si.State.LastSeq)
		for ci := range s.ListConsumers(ctx).Info() {
			t.Logf("  consumer %s: pending %d ack-pending %d redelivered %d waiting %d delivered %d/%d ackfloor %d push-bound %v",
				ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting, ci.Delivered.Consumer, ci.Delivered.Stream, ci.AckFloor.Stream, ci.PushBound)
		}
	}
}
