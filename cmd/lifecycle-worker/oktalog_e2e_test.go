package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

const testOktaToken = "00okta-api-token-for-tests"

// oktaLogDouble is Okta's GET /api/v1/logs as documented: SSWS auth, a
// filter, since or after (never both), ASCENDING pages with a rel="next"
// Link on every answer (even an empty page), 429 with X-Rate-Limit-Reset.
type oktaLogDouble struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	events   []string
	pageSize int
	throttle int
	requests []oktaLogRequest
}

type oktaLogRequest struct {
	query    url.Values
	at       time.Time
	status   int
	retryFor string
	agent    string
	reset    time.Time
}

func newOktaLogDouble(t *testing.T) *oktaLogDouble {
	d := &oktaLogDouble{t: t, pageSize: 2}
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *oktaLogDouble) add(evs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, evs...)
}

func (d *oktaLogDouble) log() []oktaLogRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]oktaLogRequest(nil), d.requests...)
}

func (d *oktaLogDouble) serve(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := r.URL.Query()
	rec := oktaLogRequest{query: q, at: time.Now(), retryFor: r.Header.Get("X-Okta-Retry-For"), agent: r.Header.Get("User-Agent")}
	fail := func(status int, code, summary string) {
		rec.status = status
		d.requests = append(d.requests, rec)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"errorCode": code, "errorSummary": summary})
	}
	switch {
	case r.URL.Path != "/api/v1/logs" || r.Method != http.MethodGet:
		fail(404, "E0000007", "Not found")
		return
	case r.Header.Get("Authorization") != "SSWS "+testOktaToken:
		fail(401, "E0000011", "Invalid token provided")
		return
	case !strings.Contains(q.Get("filter"), `eventType eq "user.lifecycle.deactivate"`):
		fail(400, "E0000053", "Invalid filter")
		return
	case q.Get("since") != "" && q.Get("after") != "":
		fail(400, "E0000001", "since and after are mutually exclusive")
		return
	case q.Get("sortOrder") != "ASCENDING":
		fail(400, "E0000001", "poll with sortOrder=ASCENDING")
		return
	}
	if d.throttle > 0 {
		d.throttle--
		rec.reset = time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second)
		w.Header().Set("X-Rate-Limit-Limit", "60")
		w.Header().Set("X-Rate-Limit-Remaining", "0")
		w.Header().Set("X-Rate-Limit-Reset", strconv.FormatInt(rec.reset.Unix(), 10))
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("X-Okta-Request-Id", "req-429")
		fail(429, "E0000047", "API call exceeded rate limit due to too many requests.")
		return
	}
	start := 0
	if a := q.Get("after"); a != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(a, "c"))
		if err != nil {
			fail(400, "E0000001", "bad after")
			return
		}
		start = n
	}
	end := min(start+d.pageSize, len(d.events))
	page := "[" + strings.Join(d.events[start:end], ",") + "]"
	next := url.Values{"after": {"c" + strconv.Itoa(end)}, "filter": {q.Get("filter")}, "limit": {q.Get("limit")}, "sortOrder": {"ASCENDING"}}
	w.Header().Add("Link", fmt.Sprintf(`<%s/api/v1/logs?%s>; rel="self"`, d.srv.URL, r.URL.RawQuery))
	w.Header().Add("Link", fmt.Sprintf(`<%s/api/v1/logs?%s>; rel="next"`, d.srv.URL, next.Encode()))
	w.Header().Set("Content-Type", "application/json")
	rec.status = 200
	d.requests = append(d.requests, rec)
	_, _ = w.Write([]byte(page))
}

func logEvent(uuid, typ, userID, login string, extra string) string {
	return fmt.Sprintf(`{"uuid":%q,"published":%q,"eventType":%q,"version":"0","severity":"INFO","displayMessage":"x",
		"actor":{"id":"00uadmin","type":"User","alternateId":"admin@example.com","displayName":"Admin"},
		"outcome":{"result":"SUCCESS"},"target":[{"id":%q,"type":"User","alternateId":%q,"displayName":"U"}]%s}`,
		uuid, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano), typ, userID, login, extra)
}

func deactivationOf(uuid, userID, login string) string {
	return logEvent(uuid, "user.lifecycle.deactivate", userID, login, "")
}

// The System Log backstop: events only in the log are revoked within a
// poll; events that also came by hook are revoked once; the poller pages by
// Link, resumes from its cursor after a restart with no gap and no replay,
// waits out a 429, and keeps the ID-JAG inventory.
func TestSystemLogBackstop(t *testing.T) {
	okta := newOktaLogDouble(t)
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	dir := t.TempDir()
	cfg := testConfig(t, dir, gtrTarget("as1", peer.URL, "email"))
	cfg.Okta.OrgURL, cfg.Okta.APIToken = okta.srv.URL, testOktaToken
	cfg.Okta.SystemLog.Enabled, cfg.Okta.SystemLog.Interval, cfg.Okta.SystemLog.Lookback = true, 200*time.Millisecond, time.Hour

	okta.add(
		deactivationOf("log-only-1", "00ulog1", "logonly1@example.com"),
		deactivationOf("both-1", "00uboth1", "both1@example.com"),
		logEvent("idjag-1", "app.oauth2.token.grant.id_jag", "00uagent", "agent@example.com",
			`,"debugContext":{"debugData":{"audience":"https://auth.mcp.example","grantType":"urn:ietf:params:oauth:grant-type:token-exchange"}}`),
		deactivationOf("log-only-2", "00ulog2", "logonly2@example.com"),
		logEvent("ignored-1", "user.lifecycle.deactivate", "00ufail", "fail@example.com", `,"outcome":{"result":"FAILURE"}`),
	)
	w := startWorker(t, cfg)
	setJWKS(peer, w)
	// The same event by hook as well.
	hook := fmt.Sprintf(`{"eventType":"com.okta.event_hook","eventId":"d-both","data":{"events":[%s]}}`, deactivationOf("both-1", "00uboth1", "both1@example.com"))
	if resp := w.postHook([]byte(hook), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("hook: %d", resp.StatusCode)
	}
	eventually(t, 30*time.Second, "log-only and both-ways events revoked", func() bool {
		s := peer.Succeeded()
		return s["logonly1@example.com"] == 1 && s["logonly2@example.com"] == 1 && s["both1@example.com"] == 1
	})
	w.idle(30 * time.Second)
	if s := peer.Succeeded(); s["both1@example.com"] != 1 || len(peer.Requests()) != 3 {
		t.Errorf("revocations %v (%d requests); the event that came both ways must revoke once", s, len(peer.Requests()))
	}
	if n := w.streamMsgs(bus.StreamLifecycle); n != 3 {
		t.Errorf("LIFECYCLE holds %d events, want 3", n)
	}
	if recs := w.audit(audit.Filter{Type: string(audit.TypeEventIgnored)}); len(recs) != 1 || !strings.Contains(string(recs[0].Detail), "FAILURE") {
		t.Errorf("the failed deactivation is not on record as ignored: %+v", recs)
	}
	kv, err := w.inst.bus.KV(context.Background(), bus.KVState)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := kv.Get(context.Background(), "idjag.00uagent")
	if err != nil || !strings.Contains(string(inv.Value()), `"audience":"https://auth.mcp.example"`) {
		t.Errorf("ID-JAG inventory: %v %s", err, inv)
	}
	first := okta.log()
	if len(first) == 0 || first[0].query.Get("since") == "" || first[0].query.Get("after") != "" {
		t.Errorf("the first poll must start at the look-back: %v", first[0].query)
	}
	for _, r := range first[1:] {
		if r.status == 200 && r.query.Get("after") == "" {
			t.Errorf("a later poll did not follow the cursor: %v", r.query)
		}
	}
	for _, r := range first {
		if !strings.HasPrefix(r.agent, "lifecycle-worker/") {
			t.Errorf("a poll's User-Agent is %q, not the worker's", r.agent)
			break
		}
	}

	// Restart: the poller resumes at its cursor — no replay, no gap.
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	before := len(okta.log())
	okta.add(deactivationOf("after-restart", "00unew", "new@example.com"))
	okta.mu.Lock()
	okta.throttle = 1 // and Okta is rate-limiting when it comes back
	okta.mu.Unlock()
	w2 := startWorker(t, cfg)
	setJWKS(peer, w2)
	eventually(t, 30*time.Second, "the new event revoked after the restart", func() bool { return peer.Succeeded()["new@example.com"] == 1 })
	w2.idle(30 * time.Second)
	after := okta.log()[before:]
	if after[0].query.Get("after") != "c5" || after[0].query.Get("since") != "" {
		t.Errorf("after a restart the first poll must resume at the saved cursor c5: %v", after[0].query)
	}
	if after[0].status != 429 || after[1].status != 200 || after[1].at.Before(after[0].reset) {
		t.Errorf("429 not waited out: first %d at %s (reset %s), then %d at %s", after[0].status, after[0].at, after[0].reset, after[1].status, after[1].at)
	}
	if s := peer.Succeeded(); s["logonly1@example.com"] != 1 || len(peer.Requests()) != 4 {
		t.Errorf("after the restart: %v, %d requests; nothing may be revoked twice", s, len(peer.Requests()))
	}
}

// The System Log's ID-JAG grants reach the plan: when a user is
// deprovisioned, the trail names every authorization server Okta vouched
// for them at, which target revoked there, and — in the offboarding view
// and report — the servers no target covers, where tokens may live on.
func TestIDJAGGrantsNamedInThePlan(t *testing.T) {
	okta := newOktaLogDouble(t)
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	cfg := testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email")+"    issuer: https://auth.mcp.example/\n"+gtrTarget("as2", peer.URL, "email"))
	cfg.Okta.OrgURL, cfg.Okta.APIToken = okta.srv.URL, testOktaToken
	cfg.Okta.SystemLog.Enabled, cfg.Okta.SystemLog.Interval, cfg.Okta.SystemLog.Lookback = true, 200*time.Millisecond, time.Hour
	grant := func(uuid, audience string) string {
		return logEvent(uuid, "app.oauth2.token.grant.id_jag", "00uagent", "agent@example.com",
			`,"debugContext":{"debugData":{"audience":"`+audience+`"}}`)
	}
	okta.add(grant("g1", "https://auth.mcp.example"), grant("g2", "https://shadow.mcp.example"))
	w := startWorker(t, cfg)
	setJWKS(peer, w)
	kv, err := w.inst.bus.KV(context.Background(), bus.KVState)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "both grants in the inventory", func() bool {
		e, err := kv.Get(context.Background(), "idjag.00uagent")
		return err == nil && strings.Count(string(e.Value()), `"audience"`) == 2
	})
	okta.add(deactivationOf("agent-off", "00uagent", "agent@example.com"))
	eventually(t, 30*time.Second, "agent revoked at both targets", func() bool { return peer.Succeeded()["agent@example.com"] == 2 })
	w.idle(30 * time.Second)

	plans := w.audit(audit.Filter{Type: string(audit.TypeRevocationPlanned)})
	if len(plans) != 1 {
		t.Fatalf("%d plans", len(plans))
	}
	var d struct {
		Grants []struct {
			Audience string `json:"audience"`
			Target   string `json:"target"`
		} `json:"id_jag_grants"`
		Uncovered []string `json:"uncovered_audiences"`
	}
	if err := json.Unmarshal(plans[0].Detail, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Grants) != 2 || d.Grants[0].Target != "as1" || d.Grants[1].Target != "" ||
		len(d.Uncovered) != 1 || d.Uncovered[0] != "https://shadow.mcp.example" {
		t.Errorf("plan detail %s", plans[0].Detail)
	}
	req, _ := http.NewRequest(http.MethodGet, w.url+"/v1/offboardings", nil)
	req.Header.Set("Authorization", "Bearer "+testAuditToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"uncovered_id_jag_audiences":["https://shadow.mcp.example"]`) {
		t.Errorf("offboardings: %s", body)
	}
	var out, errb bytes.Buffer
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("data_dir: "+cfg.DataDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := cli([]string{"audit", "report", "--config", cfgFile, "--since", "1h"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "ID-JAGs issued for https://shadow.mcp.example, which no target revokes at") {
		t.Errorf("report (exit %d):\n%s%s", code, out.String(), errb.String())
	}
}
