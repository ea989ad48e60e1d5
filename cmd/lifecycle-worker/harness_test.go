package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
)

const (
	testHookSecret  = "hook-secret-for-tests-0123456789"
	testAuditToken  = "audit-token-for-tests-0123456789"
	testPublicURL   = "https://lw.test.example"
	testOktaOrg     = "https://acme.okta.com"
	fixturesDir     = "../../examples/okta-hooks"
	deactivateFixt  = "06-okta-docs-envelope-user.lifecycle.deactivate.json"
	deactivateEmail = "john.doe@example.com"
)

// worker is a lifecycle-worker running in-process for one test.
type worker struct {
	t    *testing.T
	inst *instance
	url  string
	stop func() error
}

// testConfig returns a config for a worker in dir with the given targets
// (YAML list items, already indented by two spaces).
func testConfig(t *testing.T, dir, targets string) *config.Config {
	t.Helper()
	y := fmt.Sprintf(`
data_dir: %s
listen: 127.0.0.1:0
public_url: %s
log: { level: warn }
okta:
  org_url: %s
  hook: { secrets: [%q] }
audit:
  tokens: [ { token: %q, role: auditor } ]
  batch_wait: 5ms
targets:
%s`, dir, testPublicURL, testOktaOrg, testHookSecret, testAuditToken, targets)
	if strings.TrimSpace(targets) == "" {
		y = strings.Replace(y, "targets:\n", "targets: []\n", 1)
	}
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, y)
	}
	return cfg
}

// gtrTarget is the YAML of a GTR target at url.
func gtrTarget(name, url, format string) string {
	return fmt.Sprintf(`  - name: %s
    driver: gtr
    endpoint: %s
    subject_format: %s
    allow_insecure_http: true
    timeout: 5s
    backoff: [20ms]
    max_attempts: 5
`, name, url, format)
}

// startWorker runs a worker until the test ends (or w.stop is called).
func startWorker(t *testing.T, cfg *config.Config) *worker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *instance, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- run(ctx, cfg, log, func(i *instance) { started <- i }) }()
	var inst *instance
	select {
	case inst = <-started:
	case err := <-done:
		cancel()
		t.Fatalf("worker did not start: %v", err)
	case <-time.After(90 * time.Second): // a cluster may take a while to take new streams
		cancel()
		t.Fatal("worker did not start within 90s")
	}
	stopped := false
	w := &worker{t: t, inst: inst, url: "http://" + inst.addr.String()}
	w.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(60 * time.Second):
			return errors.New("worker did not stop within 60s")
		}
	}
	t.Cleanup(func() {
		if err := w.stop(); err != nil {
			t.Errorf("stop worker: %v", err)
		}
	})
	return w
}

// testLogWriter sends the worker's log to the test log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (w *worker) jwksURL() string { return w.url + "/.well-known/jwks.json" }

// status sends an empty request with a bearer token ("" sends none) and
// returns the answer's status.
func (w *worker) status(method, path, token string) int {
	w.t.Helper()
	req, _ := http.NewRequest(method, w.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// postHook sends a delivery with the given secret ("" sends none).
func (w *worker) postHook(body []byte, secret string) *http.Response {
	w.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.url+"/hooks/okta", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("Authorization", secret)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		w.t.Fatalf("post hook: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixturesDir, name))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return b
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// idle waits until every consumer has nothing pending or unacked and the
// indexer has indexed the whole AUDIT stream: the pipeline is at rest, so
// whatever has not happened by now will not happen.
func (w *worker) idle(within time.Duration) {
	w.t.Helper()
	js := w.inst.bus.JetStream()
	eventually(w.t, within, "pipeline at rest", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, stream := range []string{bus.StreamLifecycle, bus.StreamRevoke} {
			s, err := js.Stream(ctx, stream)
			if err != nil {
				return false
			}
			si, err := s.Info(ctx)
			if err != nil {
				return false
			}
			lister := s.ListConsumers(ctx)
			for ci := range lister.Info() {
				if ci.NumPending > 0 || ci.NumAckPending > 0 || ci.NumRedelivered > 0 {
					return false
				}
				// Every event planned, not merely none in flight.
				if stream == bus.StreamLifecycle && ci.AckFloor.Stream < si.State.LastSeq {
					return false
				}
			}
			if lister.Err() != nil {
				return false
			}
		}
		a, err := js.Stream(ctx, bus.StreamAudit)
		if err != nil {
			return false
		}
		info, err := a.Info(ctx)
		return err == nil && w.inst.indexer.Indexed() == info.State.LastSeq
	})
}

// streamMsgs returns the number of messages in a stream.
func (w *worker) streamMsgs(name string) uint64 {
	w.t.Helper()
	s, err := w.inst.bus.JetStream().Stream(context.Background(), name)
	if err != nil {
		w.t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		w.t.Fatalf("stream %s: %v", name, err)
	}
	return info.State.Msgs
}

// audit returns the indexed records matching f (all pages).
func (w *worker) audit(f audit.Filter) []audit.Record {
	w.t.Helper()
	return readAudit(w.t, w.inst.cfg.Audit.DB, f)
}

func readAudit(t *testing.T, db string, f audit.Filter) []audit.Record {
	t.Helper()
	r, err := audit.OpenReader(db)
	if err != nil {
		t.Fatalf("open audit: %v", err)
	}
	defer r.Close()
	var out []audit.Record
	f.Limit = audit.MaxLimit
	for {
		recs, err := r.Query(context.Background(), f)
		if err != nil {
			t.Fatalf("query audit: %v", err)
		}
		out = append(out, recs...)
		if len(recs) < f.Limit {
			return out
		}
		f.After = recs[len(recs)-1].Seq
	}
}

// countTypes counts records by type.
func countTypes(recs []audit.Record) map[audit.Type]int {
	m := map[audit.Type]int{}
	for _, r := range recs {
		m[r.Type]++
	}
	return m
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
