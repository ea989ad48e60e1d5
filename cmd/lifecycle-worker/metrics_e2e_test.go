package main

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// scrape reads /metrics as the audit token and returns each sample by its
// printed name and labels, e.g. `lw_revocations_total{outcome="succeeded",target="as1"}`.
func (w *worker) scrape() map[string]float64 {
	w.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, w.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testAuditToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		w.t.Fatalf("metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			w.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// /metrics counts what is on record — events accepted, auth failures,
// revocations by outcome, retries, time to revoke — and shows what waits:
// backlogs and dead letters per target, intake answers by status.
func TestMetricsCountWhatIsOnRecord(t *testing.T) {
	ok := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer ok.Close()
	flaky := gtrtest.New(gtrtest.Options{Issuer: testPublicURL, Script: func(n int, _ map[string]string) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	}})
	defer flaky.Close()
	refusing := gtrtest.New(gtrtest.Options{Issuer: testPublicURL, Script: func(int, map[string]string) int { return http.StatusBadRequest }})
	defer refusing.Close()
	cfg := testConfig(t, t.TempDir(), gtrTarget("ok", ok.URL, "email")+gtrTarget("flaky", flaky.URL, "email")+gtrTarget("refusing", refusing.URL, "email"))
	w := startWorker(t, cfg)
	for _, p := range []*gtrtest.Receiver{ok, flaky, refusing} {
		setJWKS(p, w)
	}

	if resp := w.postHook(deactivation("m1", "mia@example.com"), "not-the-secret-0123456789"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", resp.StatusCode)
	}
	if resp := w.postHook(deactivation("m2", "mia@example.com"), testHookSecret); resp.StatusCode != http.StatusOK {
		t.Fatalf("hook: %d", resp.StatusCode)
	}
	w.idle(30 * time.Second)

	m := w.scrape()
	want := map[string]float64{
		`lw_events_total{kind="deprovisioned",result="accepted",source="okta-hook"}`: 1,
		`lw_intake_auth_failures_total{source="okta-hook"}`:                          1,
		`lw_intake_requests_total{code="200",endpoint="okta_hook"}`:                  1,
		`lw_intake_requests_total{code="401",endpoint="okta_hook"}`:                  1,
		`lw_intake_request_duration_seconds_count{endpoint="okta_hook"}`:             2,
		`lw_revocations_total{outcome="succeeded",target="ok"}`:                      1,
		`lw_revocations_total{outcome="succeeded",target="flaky"}`:                   1,
		`lw_revocations_total{outcome="dead_lettered",target="refusing"}`:            1,
		`lw_revocation_retries_total{target="flaky"}`:                                1,
		`lw_revocation_request_duration_seconds_count{target="flaky"}`:               2,
		`lw_revocation_request_duration_seconds_count{target="refusing"}`:            1,
		`lw_time_to_revoke_seconds_count{target="ok"}`:                               1,
		`lw_time_to_revoke_seconds_count{target="flaky"}`:                            1,
		`lw_dead_letters{target="refusing"}`:                                         1,
		`lw_dead_letters{target="ok"}`:                                               0,
		`lw_revoke_backlog_messages{target="ok"}`:                                    0,
		`lw_revoke_backlog_messages{target="refusing"}`:                              0,
		`lw_planner_backlog_events`:                                                  0,
		`lw_target_held_seconds{target="ok"}`:                                        0,
		`lw_audit_index_backlog_records`:                                             0,
		`lw_audit_index_ahead_of_stream_messages`:                                    0,
	}
	for k, v := range want {
		got, found := m[k]
		if !found || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, found, v)
		}
	}
	if _, found := m["process_resident_memory_bytes"]; !found {
		t.Error("no process metrics")
	}
	// The counters and the trail agree.
	if n := len(w.audit(audit.Filter{Type: string(audit.TypeRevocationSucceeded)})); n != 2 {
		t.Errorf("%d revocation.succeeded records, metrics say 2", n)
	}
	if m[`lw_audit_indexed_seq`] != m[`lw_audit_stream_last_seq`] || m[`lw_audit_indexed_seq`] == 0 {
		t.Errorf("index at %v, stream at %v", m[`lw_audit_indexed_seq`], m[`lw_audit_stream_last_seq`])
	}
}
