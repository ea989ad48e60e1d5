package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// Every shared fixture is answered 200. Each fixture that revokes (the
// deactivations, and the breached credential, a risk_elevated event) ends in
// one verified GTR request at an email target and at an iss_sub target, and
// in revocation.succeeded records for that user; the others revoke nothing.
func TestOktaFixturesEndToEnd(t *testing.T) {
	type who struct{ email, id string }
	deactivated := &who{deactivateEmail, "00u3m90rxKjGQ0G6L1d6"}
	want := map[string]*who{
		"01-okta-docs-envelope-user.session.start.json":                          nil, // not mapped
		"02-okta-docs-logevent-user.lifecycle.deactivate.json":                   deactivated,
		"03-discord-access-group.user_membership.remove.json":                    nil, // no target scoped to the group
		"04-okta-workflows-templates-security.breached_credential.detected.json": {"test@example.com", "exampleOktaID12345"},
		"05-COMPOSED-envelope01-with-event02-user.lifecycle.deactivate.json":     deactivated,
		"06-okta-docs-envelope-user.lifecycle.deactivate.json":                   deactivated,
	}
	entries, err := os.ReadDir(fixturesDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < len(want) {
		t.Fatalf("expected the shared okta-hooks fixtures, found %d files", len(entries))
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			byEmail := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
			bySub := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
			defer byEmail.Close()
			defer bySub.Close()
			w := startWorker(t, testConfig(t, t.TempDir(),
				gtrTarget("by-email", byEmail.URL, "email")+gtrTarget("by-sub", bySub.URL, "iss_sub")))
			setJWKS(byEmail, w)
			setJWKS(bySub, w)

			if resp := w.postHook(fixture(t, e.Name()), testHookSecret); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			w.idle(30 * time.Second)
			if recs := w.audit(audit.Filter{}); len(recs) == 0 {
				t.Fatal("no audit record for the delivery")
			}
			subject, known := want[e.Name()]
			if !known {
				return // a fixture added later: answered 200 is all we know
			}
			if subject == nil {
				if n := len(byEmail.Requests()) + len(bySub.Requests()); n != 0 {
					t.Errorf("%d revocations for a fixture that should revoke nothing", n)
				}
				return
			}
			for _, rc := range []struct {
				r      *gtrtest.Receiver
				format string
				want   map[string]string
			}{
				{byEmail, "email", map[string]string{"format": "email", "email": subject.email}},
				{bySub, "iss_sub", map[string]string{"format": "iss_sub", "iss": testOktaOrg, "sub": subject.id}},
			} {
				if rej := rc.r.Rejected(); len(rej) > 0 {
					t.Fatalf("%s receiver rejected our requests: %v", rc.format, rej)
				}
				reqs := rc.r.Requests()
				if len(reqs) != 1 {
					t.Fatalf("%s receiver got %d requests, want 1", rc.format, len(reqs))
				}
				q := reqs[0]
				if fmt.Sprint(q.SubID) != fmt.Sprint(rc.want) {
					t.Errorf("%s sub_id = %v, want %v", rc.format, q.SubID, rc.want)
				}
				if q.Header["typ"] != "global-token-revocation+jwt" || q.Audience != rc.r.URL || q.JTI == "" || q.Issuer != testPublicURL {
					t.Errorf("%s JWT: header %v aud %q jti %q iss %q", rc.format, q.Header, q.Audience, q.JTI, q.Issuer)
				}
			}
			recs := w.audit(audit.Filter{Subject: subject.email, Type: string(audit.TypeRevocationSucceeded)})
			targets := map[string]bool{}
			for _, r := range recs {
				targets[r.Target] = true
			}
			if len(recs) != 2 || !targets["by-email"] || !targets["by-sub"] {
				t.Errorf("succeeded records %+v, want one per target", recs)
			}
		})
	}
}

// setJWKS points a receiver at the worker's JWKS once the worker listens.
func setJWKS(r *gtrtest.Receiver, w *worker) { r.SetJWKSURL(w.jwksURL()) }

// The same delivery twice revokes once per target; the second receipt is on
// record as a duplicate.
func TestDuplicateDeliveryRevokesOnce(t *testing.T) {
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	w := startWorker(t, testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email")))
	setJWKS(peer, w)
	body := fixture(t, deactivateFixt)
	for i := 0; i < 2; i++ {
		if resp := w.postHook(body, testHookSecret); resp.StatusCode != http.StatusOK {
			t.Fatalf("delivery %d: status %d", i+1, resp.StatusCode)
		}
	}
	w.idle(30 * time.Second)
	if n := w.streamMsgs(bus.StreamLifecycle); n != 1 {
		t.Errorf("LIFECYCLE holds %d events, want 1", n)
	}
	if got := peer.Succeeded()[deactivateEmail]; got != 1 || len(peer.Requests()) != 1 {
		t.Errorf("receiver got %d requests (%d succeeded), want exactly 1", len(peer.Requests()), got)
	}
	recs := w.audit(audit.Filter{Subject: deactivateEmail, Type: string(audit.TypeEventReceived)})
	outcomes := map[string]int{}
	for _, r := range recs {
		outcomes[r.Outcome]++
	}
	if outcomes["accepted"] != 1 || outcomes["duplicate"] != 1 {
		t.Errorf("event.received outcomes %v, want one accepted and one duplicate", outcomes)
	}
	if n := countTypes(w.audit(audit.Filter{Subject: deactivateEmail}))[audit.TypeRevocationSucceeded]; n != 1 {
		t.Errorf("%d revocation.succeeded records, want 1", n)
	}
}

// Refused input gets the right status, a record, and publishes nothing.
func TestHookRefusals(t *testing.T) {
	w := startWorker(t, testConfig(t, t.TempDir(), ""))
	body := fixture(t, deactivateFixt)

	cases := []struct {
		name   string
		body   []byte
		secret string
		status int
		typ    audit.Type
	}{
		{"no secret", body, "", http.StatusUnauthorized, audit.TypeAuthFailed},
		{"wrong secret", body, "hook-secret-for-tests-0123456788", http.StatusUnauthorized, audit.TypeAuthFailed},
		{"secret prefix", body, testHookSecret[:10], http.StatusUnauthorized, audit.TypeAuthFailed},
		{"not json", []byte("user.lifecycle.deactivate john"), testHookSecret, http.StatusBadRequest, audit.TypeEventRejected},
		{"json without events", []byte(`{"hello":"world"}`), testHookSecret, http.StatusBadRequest, audit.TypeEventRejected},
		{"2 MiB", append(append([]byte(`{"data":{"events":[]},"pad":"`), bytes.Repeat([]byte("a"), 2<<20)...), '"', '}'), testHookSecret, http.StatusRequestEntityTooLarge, audit.TypeEventRejected},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(w.audit(audit.Filter{Type: string(c.typ)}))
			if resp := w.postHook(c.body, c.secret); resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			eventually(t, 10*time.Second, "refusal on record", func() bool {
				return len(w.audit(audit.Filter{Type: string(c.typ)})) == before+1
			})
		})
	}
	w.idle(10 * time.Second)
	if n := w.streamMsgs(bus.StreamLifecycle); n != 0 {
		t.Errorf("refused deliveries published %d events", n)
	}
	for _, r := range w.audit(audit.Filter{Type: string(audit.TypeAuthFailed)}) {
		if strings.Contains(string(mustJSON(t, r)), "hook-secret") {
			t.Errorf("auth.failed record contains the presented secret: %s", mustJSON(t, r))
		}
	}

	t.Run("verification", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, w.url+"/hooks/okta", nil)
		req.Header.Set("Authorization", testHookSecret)
		req.Header.Set("x-okta-verification-challenge", "j9ZKR6Nd3yQ8Fw0Xa4sHbT2mPcV1eL7u")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || len(got) != 1 || got["verification"] != "j9ZKR6Nd3yQ8Fw0Xa4sHbT2mPcV1eL7u" {
			t.Errorf("verification answer %d %q %v", resp.StatusCode, resp.Header.Get("Content-Type"), got)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A flood of refused requests does not flood the trail: past the refusal
// budget they are summarised, and every one is still accounted for.
func TestRefusalFloodIsSummarised(t *testing.T) {
	w := startWorker(t, testConfig(t, t.TempDir(), ""))
	const n = 400
	var wg sync.WaitGroup
	next := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if resp := w.postHook([]byte(`{}`), "not-the-secret-0123456789"); resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	if err := w.stop(); err != nil { // intake closes, the budget writes its summary
		t.Fatal(err)
	}
	recs := w.audit(audit.Filter{Type: string(audit.TypeAuthFailed)})
	one, held := 0, 0
	for _, r := range recs {
		var d struct {
			HeldBack int `json:"held_back"`
		}
		_ = json.Unmarshal(r.Detail, &d)
		if d.HeldBack > 0 {
			held += d.HeldBack
		} else {
			one++
		}
	}
	if one+held != n || held == 0 || one >= n {
		t.Errorf("%d refusals on record one by one and %d held back, want %d in all with some held back", one, held, n)
	}
}
