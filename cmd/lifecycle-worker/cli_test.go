package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

func run3(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli(args, &out, &errb)
	return code, out.String(), errb.String()
}

// Help is asked the same way everywhere and answered on stdout with exit
// 0; --version works; a verb's --help lists only its own flags.
func TestCLIHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}, {"-v"}} {
		if code, out, _ := run3(args...); code != 0 || !strings.HasPrefix(out, "lifecycle-worker ") || !strings.Contains(out, "nats-server v2.") {
			t.Errorf("%v: %d %q", args, code, out)
		}
	}
	for _, cmd := range []string{"serve", "audit", "dlq", "targets", "ssf"} {
		for _, args := range [][]string{{"help", cmd}, {cmd, "--help"}, {cmd, "-h"}, {cmd, "help"}} {
			code, out, errb := run3(args...)
			if code != 0 || !strings.Contains(out, "Usage: lifecycle-worker "+cmd) || errb != "" {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, firstLine(out), errb)
			}
		}
	}
	if code, out, _ := run3("help"); code != 0 || !strings.Contains(out, "lifecycle-worker help COMMAND") {
		t.Errorf("help: %d %q", code, firstLine(out))
	}
	if code, _, errb := run3("audit", "nope"); code != 2 || !strings.Contains(errb, `unknown audit verb "nope"`) {
		t.Errorf("audit nope: %d %q", code, errb)
	}
	code, _, errb := run3("targets", "list", "--help")
	if code != 0 || strings.Contains(errb, "-name") || !strings.Contains(errb, "-config") {
		t.Errorf("targets list --help: %d %q", code, errb)
	}
	if code, _, errb := run3("audit", "query", "--help"); code != 0 || !strings.Contains(errb, "RFC 3339") || !strings.Contains(errb, "revocation.succeeded") {
		t.Errorf("audit query --help says no formats: %q", errb)
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

// Read-only commands need no intake secrets, check their values, and say
// why they show nothing.
func TestCLIReadOnlyAndHints(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	// The quick start's config names secrets from the environment; a new
	// terminal does not have them.
	t.Setenv("OKTA_HOOK_SECRET", "")
	t.Setenv("AUDIT_TOKEN", "")
	raw, err := os.ReadFile("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, bytes.Replace(raw, []byte("data_dir:"), []byte("data_dir: "+dir+" #"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errb := run3("audit", "query", "--config", cfgFile)
	if code != 1 || !strings.Contains(errb, "no audit index at") || !strings.Contains(errb, "--data-dir") {
		t.Errorf("audit query without an index: %d %q", code, errb)
	}
	if strings.Contains(errb, "secrets") || strings.Contains(errb, "empty") {
		t.Errorf("a read-only query asked for secrets: %q", errb)
	}
	if code, _, errb := run3("audit", "query", "--type", "nope", "--data-dir", dir); code != 1 || !strings.Contains(errb, "is not one of") {
		t.Errorf("--type nope: %d %q", code, errb)
	}
	if code, out, errb := run3("targets", "list", "--data-dir", dir); code != 0 || out != "" || !strings.Contains(errb, "no targets configured") {
		t.Errorf("targets list with none: %d %q %q", code, out, errb)
	}
}

// dlq takes its token from the config when none is given, says which token
// a refusal wants, and says when there is nothing.
func TestCLIDLQTokens(t *testing.T) {
	w := startWorker(t, testConfig(t, t.TempDir(), ""))
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := writeFile(cfgFile, fmt.Sprintf("listen: %s\naudit: { tokens: [ { token: %q, role: operator } ] }\n", w.inst.addr, testAuditToken)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LW_API_TOKEN", "")
	if code, out, errb := run3("dlq", "list", "--config", cfgFile); code != 0 || !strings.Contains(out, "no dead letters") {
		t.Errorf("dlq list with the config's token: %d %q %q", code, out, errb)
	}
	if code, _, errb := run3("dlq", "list", "--config", cfgFile, "--token", "not-a-token-0123456789"); code != 1 || !strings.Contains(errb, "audit.tokens") {
		t.Errorf("dlq list with a wrong token: %d %q", code, errb)
	}
}

// lockedBuffer collects a worker's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serve says what it does: one info line per delivery outcome and per
// revocation outcome; it does not warn about what is not configured.
func TestServeLogsOutcomes(t *testing.T) {
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	cfg := testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email"))
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *instance, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, log, func(i *instance) { started <- i }) }()
	var inst *instance
	select {
	case inst = <-started:
	case err := <-done:
		t.Fatal(err)
	}
	w := &worker{t: t, inst: inst, url: "http://" + inst.addr.String()}
	setJWKS(peer, w)
	w.postHook(fixture(t, deactivateFixt), testHookSecret)
	w.postHook(fixture(t, deactivateFixt), "wrong-secret-0123456789")
	eventually(t, 30*time.Second, "the revocation logged", func() bool { return strings.Contains(logs.String(), `msg=revoked`) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, want := range []string{`msg="event received"`, `msg="request refused: authentication"`, `msg=revoked`, "target=as1"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	for _, unwanted := range []string{"SCIM has no token", "SSF has no transmitter"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("the log warns about what is not configured: %s", unwanted)
		}
	}
}

// health says whether a worker is ready, by exit status.
func TestHealthCommand(t *testing.T) {
	w := startWorker(t, testConfig(t, t.TempDir(), ""))
	if code, out, errb := run3("health", "--url", w.url); code != 0 || !strings.Contains(out, "ready") {
		t.Errorf("health of a running worker: %d %q %q", code, out, errb)
	}
	if code, _, errb := run3("health", "--url", "http://"+freeAddr(t)); code != 1 || !strings.Contains(errb, "not ready") {
		t.Errorf("health of nothing: %d %q", code, errb)
	}
}
