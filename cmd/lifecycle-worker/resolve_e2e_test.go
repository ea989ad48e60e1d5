package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// A target that needs an email gets one for a user whose Okta login is not
// an email: looked up once in Okta's Users API, cached, and the trail says
// where it came from.
func TestSubjectResolvedFromOkta(t *testing.T) {
	var lookups atomic.Int32
	okta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "SSWS "+testOktaToken || r.Method != http.MethodGet || r.URL.Path != "/api/v1/users/00ujdoe" {
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"errorCode":"E0000007","errorSummary":"Not found"}`))
			return
		}
		lookups.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"00ujdoe","status":"DEPROVISIONED","profile":{"login":"jdoe","email":"john.doe@corp.example","firstName":"John","lastName":"Doe"}}`))
	}))
	defer okta.Close()
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	cfg := testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email")+gtrTarget("as2", peer.URL, "email"))
	cfg.Okta.OrgURL, cfg.Okta.APIToken = okta.URL, testOktaToken
	w := startWorker(t, cfg)
	setJWKS(peer, w)
	body := fmt.Sprintf(`{"eventType":"com.okta.event_hook","eventId":"res","data":{"events":[%s]}}`, deactivationOf("res-1", "00ujdoe", "jdoe"))
	if resp := w.postHook([]byte(body), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("hook: %d", resp.StatusCode)
	}
	eventually(t, 30*time.Second, "both targets revoked by email", func() bool { return peer.Succeeded()["john.doe@corp.example"] == 2 })
	w.idle(30 * time.Second)
	if n := lookups.Load(); n != 1 {
		t.Errorf("%d Okta lookups for one user, want 1 (cached)", n)
	}
	recs := w.audit(audit.Filter{Subject: "00ujdoe", Type: string(audit.TypeRevocationSucceeded)})
	if len(recs) != 2 {
		t.Fatalf("succeeded records %+v", recs)
	}
	for _, r := range recs {
		if !strings.Contains(string(r.Detail), `"email_from":"okta_api`) {
			t.Errorf("the trail does not say where the email came from: %s", r.Detail)
		}
	}
}
