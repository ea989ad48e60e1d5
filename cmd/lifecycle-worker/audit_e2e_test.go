package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// audit verify passes on a live trail and names the first bad record of a
// tampered one; audit rebuild replays the AUDIT stream into a new file with
// the same head hash as the live index.
func TestAuditVerifyAndRebuild(t *testing.T) {
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL, Script: func(n int, _ map[string]string) int {
		if n%3 == 0 {
			return 503 // some retries, so the trail has every kind of record
		}
		return 204
	}})
	defer peer.Close()
	dir := t.TempDir()
	cfg := testConfig(t, dir, gtrTarget("as1", peer.URL, "email")+gtrTarget("as2", peer.URL, "email"))
	w := startWorker(t, cfg)
	setJWKS(peer, w)
	w.postHook(deactivation("v1", "a@example.com", "b@example.com", "c@example.com"), testHookSecret)
	w.postHook(deactivation("v1", "a@example.com", "b@example.com", "c@example.com"), testHookSecret) // a copy
	w.postHook([]byte("not json"), testHookSecret)
	w.idle(30 * time.Second)
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	writeConfig(t, cfgFile, cfg.DataDir)

	var out, errb bytes.Buffer
	if code := cli([]string{"audit", "verify", "--config", cfgFile, "--public-key", pinnedKey(t, cfg.DataDir)}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "ok: ") ||
		strings.Contains(out.String(), " 0 signed checkpoints") {
		t.Fatalf("verify of an untouched trail: exit %d, %q %q", code, out.String(), errb.String())
	}

	// The pin is the verifier's: none, or the private key, is refused; a
	// JWKS (file or URL) holding the checkpoint key will do.
	for _, args := range [][]string{{}, {"--public-key", filepath.Join(cfg.DataDir, "keys", "checkpoint-key.pem")}} {
		errb.Reset()
		if code := cli(append([]string{"audit", "verify", "--config", cfgFile}, args...), &out, &errb); code != 1 || !strings.Contains(errb.String(), "pinned") && !strings.Contains(errb.String(), "never pin a private key") {
			t.Errorf("verify %v: exit %d, %q", args, code, errb.String())
		}
	}
	ck, err := keys.LoadOrCreateCheckpointKey(filepath.Join(cfg.DataDir, "keys", "checkpoint-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	set, _ := keys.JWKS(ck.JWK())
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(set) }))
	defer jwksSrv.Close()
	out.Reset()
	if code := cli([]string{"audit", "verify", "--config", cfgFile, "--jwks", jwksSrv.URL}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "ok: ") {
		t.Errorf("verify --jwks URL: exit %d, %q %q", code, out.String(), errb.String())
	}

	s, err := audit.OpenStore(context.Background(), cfg.Audit.DB)
	if err != nil {
		t.Fatal(err)
	}
	live := s.Head()
	s.Close()
	rebuilt := filepath.Join(t.TempDir(), "rebuilt.db")
	out.Reset()
	if code := cli([]string{"audit", "rebuild", "--config", cfgFile, "--out", rebuilt}, &out, &errb); code != 0 {
		t.Fatalf("rebuild: exit %d: %s", code, errb.String())
	}
	if want := fmt.Sprintf("head %d %x", live.Seq, live.Hash); !strings.Contains(out.String(), want) {
		t.Errorf("rebuild printed %q, want the live head %q", out.String(), want)
	}

	db, err := sql.Open("sqlite3", "file:"+cfg.Audit.DB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE records SET body = CAST(body || ' ' AS BLOB) WHERE seq = 5`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out.Reset()
	errb.Reset()
	if code := cli([]string{"audit", "verify", "--config", cfgFile, "--public-key", pinnedKey(t, cfg.DataDir)}, &out, &errb); code != 3 || !strings.Contains(errb.String(), "record 5") {
		t.Errorf("verify of a tampered trail: exit %d, %q", code, errb.String())
	}

	// The rebuilt index is whole; cutting off its tail is caught by the
	// worker's checkpoint file, which lives outside the database.
	rebuiltCfg := filepath.Join(dir, "rebuilt.yaml")
	if err := writeFile(rebuiltCfg, fmt.Sprintf("data_dir: %s\naudit: { db: %s }\n", cfg.DataDir, rebuilt)); err != nil {
		t.Fatal(err)
	}
	db, err = sql.Open("sqlite3", "file:"+rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf(`DELETE FROM records WHERE seq > %d`, live.Seq-2)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	errb.Reset()
	if code := cli([]string{"audit", "verify", "--config", rebuiltCfg, "--public-key", pinnedKey(t, cfg.DataDir)}, &out, &errb); code != 3 || !strings.Contains(errb.String(), fmt.Sprintf("record %d: missing", live.Seq-1)) {
		t.Errorf("verify of a cut-off trail: exit %d, %q", code, errb.String())
	}
}

// writeConfig writes a minimal config file pointing at dataDir.
func writeConfig(t *testing.T, path, dataDir string) {
	t.Helper()
	if err := writeFile(path, fmt.Sprintf("data_dir: %s\n", dataDir)); err != nil {
		t.Fatal(err)
	}
}

// pinnedKey is a copy, outside dataDir, of the worker's checkpoint public
// key: what a verifier pins.
func pinnedKey(t *testing.T, dataDir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dataDir, "keys", "checkpoint-key.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pinned.pub.pem")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
