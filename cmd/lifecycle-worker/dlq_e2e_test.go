package main

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

const testOperatorToken = "operator-token-for-tests-0123456789"

// A dead letter is listed to an auditor, replayed only by an operator, and
// then completes; the trail shows the dead letter, the replay (and who asked)
// and the success.
func TestDeadLetterReplayAndRoles(t *testing.T) {
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL, Script: func(int, map[string]string) int { return 400 }})
	defer peer.Close()
	cfg := testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email")+gtrTarget("as2", peer.URL, "email"))
	cfg.Audit.Tokens = append(cfg.Audit.Tokens, config.TokenConfig{Token: testOperatorToken, Role: config.RoleOperator})
	w := startWorker(t, cfg)
	setJWKS(peer, w)
	w.postHook(deactivation("dl", "dora@example.com"), testHookSecret)
	w.idle(30 * time.Second)
	if n := w.streamMsgs(bus.StreamDLQ); n != 2 {
		t.Fatalf("DLQ holds %d, want 2", n)
	}

	for _, c := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/v1/dlq", "", 401},
		{"GET", "/v1/audit/records", "wrong-token-0123456789", 401},
		{"GET", "/v1/dlq", testAuditToken, 200},
		{"POST", "/v1/dlq/replay", testAuditToken, 403},
		{"POST", "/v1/dlq/replay", "", 401},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", testAuditToken, 200},
		{"GET", "/v1/audit/export", "", 401},
		{"GET", "/v1/offboardings", "", 401},
		{"GET", "/v1/audit/checkpoints/latest", "", 401},
	} {
		if got := w.status(c.method, c.path, c.token); got != c.want {
			t.Errorf("%s %s with %q: %d, want %d", c.method, c.path, c.token, got, c.want)
		}
	}
	if n := w.streamMsgs(bus.StreamDLQ); n != 2 {
		t.Fatalf("refused replays changed the DLQ: %d", n)
	}
	mreq, _ := http.NewRequest("GET", w.url+"/metrics", nil)
	mreq.Header.Set("Authorization", "Bearer "+testAuditToken)
	mresp, err := http.DefaultClient.Do(mreq)
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(mbody), "lw_audit_index_lag_seconds ") || !strings.Contains(string(mbody), "lw_audit_indexed_seq ") {
		t.Errorf("metrics:\n%s", mbody)
	}

	var out, errb bytes.Buffer
	t.Setenv("LW_API_TOKEN", testAuditToken)
	if code := cli([]string{"dlq", "list", "--url", w.url, "--target", "as1"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "dora@example.com") || strings.Count(out.String(), "\n") != 2 {
		t.Fatalf("dlq list: exit %d\n%s%s", code, out.String(), errb.String())
	}

	eventually(t, 10*time.Second, "dlq list on record with who looked", func() bool {
		recs := w.audit(audit.Filter{Type: string(audit.TypeDLQListed)})
		return len(recs) > 0 && strings.Contains(string(recs[len(recs)-1].Detail), `"by":"auditor:`)
	})
	peer.SetScript(func(int, map[string]string) int { return 204 })
	out.Reset()
	if code := cli([]string{"dlq", "replay", "--url", w.url, "--token", testOperatorToken, "--target", "as1"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "1 dead letters replayed") {
		t.Fatalf("dlq replay: exit %d\n%s%s", code, out.String(), errb.String())
	}
	w.idle(30 * time.Second)
	if n := w.streamMsgs(bus.StreamDLQ); n != 1 {
		t.Errorf("DLQ holds %d after replaying as1, want 1 (as2's)", n)
	}
	recs := w.audit(audit.Filter{Subject: "dora@example.com", Target: "as1"})
	var types []string
	for _, r := range recs {
		types = append(types, string(r.Type))
		if r.Type == audit.TypeRevocationReplayed && !strings.Contains(string(r.Detail), `"by":"operator:`) {
			t.Errorf("replay record does not name who asked: %s", r.Detail)
		}
	}
	if got := strings.Join(types, ","); got != "revocation.dead_lettered,revocation.replayed,revocation.succeeded" {
		t.Errorf("as1 timeline %s", got)
	}
}
