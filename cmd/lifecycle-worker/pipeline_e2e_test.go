package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// deactivation returns a hook delivery deactivating the given users.
func deactivation(delivery string, users ...string) []byte {
	var evs []string
	for i, u := range users {
		evs = append(evs, fmt.Sprintf(`{"uuid":"%s-%d","published":"2026-11-20T10:00:00.000Z","eventType":"user.lifecycle.deactivate",
			"version":"0","severity":"INFO","displayMessage":"Deactivate Okta User",
			"actor":{"id":"00uadmin","type":"User","alternateId":"admin@example.com","displayName":"Admin"},
			"outcome":{"result":"SUCCESS"},
			"target":[{"id":"00u%s","type":"User","alternateId":"%s","displayName":"%s"}]}`, delivery, i, u, u, u))
	}
	return []byte(fmt.Sprintf(`{"eventType":"com.okta.event_hook","eventTypeVersion":"1.0","cloudEventsVersion":"0.1",
		"source":"https://acme.okta.com/api/v1/eventHooks/who1","eventId":"%s","data":{"events":[%s]}}`, delivery, strings.Join(evs, ",")))
}

// A target's answers decide each job's end: retried 5xx succeed later with
// every attempt on record; 400 dead-letters at once; 404 is not applicable.
func TestTargetAnswers(t *testing.T) {
	statuses := map[string][]int{
		"flaky@example.com":   {503, 503, 204},
		"bad@example.com":     {400},
		"unknown@example.com": {404},
	}
	calls := map[string]int{}
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL, Script: func(_ int, sid map[string]string) int {
		e := sid["email"]
		calls[e]++ // the script runs under the receiver's lock
		seq := statuses[e]
		return seq[min(calls[e], len(seq))-1]
	}})
	defer peer.Close()
	w := startWorker(t, testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email")))
	setJWKS(peer, w)
	if resp := w.postHook(deactivation("d1", "flaky@example.com", "bad@example.com", "unknown@example.com"), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	w.idle(30 * time.Second)
	if rej := peer.Rejected(); len(rej) > 0 {
		t.Fatalf("receiver rejected: %v", rej)
	}

	// Each attempt is one record: revocation.attempted while the job goes
	// on, then the record that ends it, carrying the last answer.
	check := func(email string, wantAttempts []int, wantEnd audit.Type) {
		t.Helper()
		recs := w.audit(audit.Filter{Subject: email, Target: "as1"})
		var got []int
		var ends []audit.Type
		for _, r := range recs {
			switch r.Type {
			case audit.TypeRevocationAttempted, audit.TypeRevocationSucceeded, audit.TypeRevocationNotApplicable, audit.TypeRevocationDeadLettered:
				got = append(got, r.HTTPStatus)
				if r.Attempt != len(got) {
					t.Errorf("%s: attempt record %d says attempt %d", email, len(got), r.Attempt)
				}
				if r.Type != audit.TypeRevocationAttempted {
					ends = append(ends, r.Type)
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(wantAttempts) {
			t.Errorf("%s: attempts answered %v, want %v", email, got, wantAttempts)
		}
		if len(ends) != 1 || ends[0] != wantEnd {
			t.Errorf("%s: ends %v, want [%s]", email, ends, wantEnd)
		}
	}
	check("flaky@example.com", []int{503, 503, 204}, audit.TypeRevocationSucceeded)
	check("bad@example.com", []int{400}, audit.TypeRevocationDeadLettered)
	check("unknown@example.com", []int{404}, audit.TypeRevocationNotApplicable)
	if n := w.streamMsgs(bus.StreamDLQ); n != 1 {
		t.Errorf("REVOKE_DLQ holds %d jobs, want 1", n)
	}
}

// A target that never recovers exhausts max_attempts and is dead-lettered.
func TestOutOfAttemptsDeadLetters(t *testing.T) {
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL, Script: func(int, map[string]string) int { return 502 }})
	defer peer.Close()
	w := startWorker(t, testConfig(t, t.TempDir(), gtrTarget("down", peer.URL, "email")))
	setJWKS(peer, w)
	w.postHook(deactivation("d2", "gone@example.com"), testHookSecret)
	w.idle(30 * time.Second)
	recs := w.audit(audit.Filter{Subject: "gone@example.com"})
	c := countTypes(recs)
	if c[audit.TypeRevocationAttempted] != 4 || c[audit.TypeRevocationDeadLettered] != 1 || len(peer.Requests()) != 5 {
		t.Errorf("records %v, requests %d; want 4 attempts and a fifth that dead-letters", c, len(peer.Requests()))
	}
	if n := w.streamMsgs(bus.StreamDLQ); n != 1 {
		t.Errorf("REVOKE_DLQ holds %d jobs, want 1", n)
	}
}

// With NATS gone the hook answers 503 inside Okta's 3 s, so Okta retries.
func TestHookAnswers503WithoutNATS(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	cfg := testConfig(t, t.TempDir(), "")
	f := false
	cfg.NATS.Embedded = &f
	cfg.NATS.URLs = []string{ns.ClientURL()}
	w := startWorker(t, cfg)

	if resp := w.postHook(deactivation("before", "a@example.com"), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("with NATS up: status %d", resp.StatusCode)
	}
	ns.Shutdown()
	ns.WaitForShutdown()

	// Okta's own timeout: a client that gives up after 3 s.
	client := &http.Client{Timeout: 3 * time.Second}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, w.url+"/hooks/okta",
		strings.NewReader(string(deactivation("during", "b@example.com"))))
	req.Header.Set("Authorization", testHookSecret)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("hook did not answer within 3s: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
}
