package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

const (
	pipelinePassword = "pipeline-password-0123456789"
	monitorPassword  = "monitor-password-0123456789"
	intakePassword   = "intake-password-0123456789"
)

// The worker's NATS port takes only the worker's identities, and each only
// for its own work, enforced by the server: a worker split over two
// processes (intake+audit on the embedded server, the pipeline connecting
// over its listener as the pipeline identity) revokes as one; a client
// without credentials, or with a wrong password, is refused; a monitor
// identity can publish neither a lifecycle event nor an audit record; the
// pipeline identity cannot publish a lifecycle event; the intake identity
// cannot write a revocation job, update, purge or delete a stream. Nothing
// the intruders tried reached the authorization server or the index, and
// the trail verifies.
func TestNATSOnlyWorkerIdentities(t *testing.T) {
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	natsAddr := freeAddr(t)
	keyFile := filepath.Join(t.TempDir(), "signing-key.pem")
	target := gtrTarget("as1", peer.URL, "email")

	cfgA := testConfig(t, t.TempDir(), target)
	cfgA.Keys.SigningKeyFile = keyFile
	cfgA.NATS.Listen = natsAddr
	cfgA.NATS.Users = []config.NATSUserConfig{
		{Name: "pipeline-1", Password: pipelinePassword, Roles: []string{"pipeline"}},
		{Name: "monitor-1", Password: monitorPassword, Roles: []string{"monitor"}},
		{Name: "intake-1", Password: intakePassword, Roles: []string{"intake"}},
	}
	if err := cfgA.SetRoles("intake,poller,audit"); err != nil {
		t.Fatal(err)
	}
	a := startWorker(t, cfgA)
	setJWKS(peer, a)

	cfgB := testConfig(t, t.TempDir(), target)
	cfgB.Keys.SigningKeyFile = keyFile
	embedded := false
	cfgB.NATS.Embedded, cfgB.NATS.URLs = &embedded, []string{"nats://" + natsAddr}
	cfgB.NATS.User, cfgB.NATS.Password = "pipeline-1", pipelinePassword
	if err := cfgB.SetRoles("pipeline"); err != nil {
		t.Fatal(err)
	}
	startWorker(t, cfgB)

	// The legitimate path: a hook to the intake process, revoked by the
	// pipeline process, indexed by the audit process.
	if resp := a.postHook(fixture(t, deactivateFixt), testHookSecret); resp.StatusCode != 200 {
		t.Fatalf("hook answered %d", resp.StatusCode)
	}
	eventually(t, 30*time.Second, "the split worker revoked", func() bool { return peer.Succeeded()[deactivateEmail] == 1 })
	// The pipeline identity marks what it planned (a write at the key's
	// revision, decision 0025): a mark refused would only be logged.
	planned, err := a.inst.bus.KV(context.Background(), bus.KVPlanned)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the pipeline identity's planned mark", func() bool {
		keys, err := planned.ListKeys(context.Background())
		if err != nil {
			return false
		}
		n := 0
		for k := range keys.Keys() {
			if strings.HasPrefix(k, "r.") {
				n++
			}
		}
		return n == 1
	})

	// Intruders.
	url := "nats://" + natsAddr
	if nc, err := nats.Connect(url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was let in")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("no credentials: want an authorization error, got %v", err)
	}
	if nc, err := nats.Connect(url, nats.UserInfo("pipeline-1", "wrong-password-0123456789"), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a wrong password was let in")
	}
	if nc, err := nats.Connect(url, nats.UserInfo("lifecycle-worker-internal", "x"), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("the in-process identity was let in over the network")
	}

	fake := events.Event{ID: "okta:forged-1", Source: "okta", Kind: events.KindDeprovisioned,
		Subject: events.Subject{Email: "victim@example.com"}, OccurredAt: time.Now(), ReceivedAt: time.Now()}
	fakeEvent, _ := json.Marshal(fake)
	fakeRec, _ := json.Marshal(audit.Record{ID: "forged-record", Time: time.Now(), Type: audit.TypeRevocationSucceeded,
		EventID: "okta:forged-1", Target: "as1", Outcome: "succeeded"})
	fakeJob := []byte(`{"id":"okta:forged-1|as1","event_id":"okta:forged-1","target":"as1","subject":{"email":"victim@example.com"}}`)

	refused := func(user, password, subject string, data []byte) {
		t.Helper()
		nc, err := nats.Connect(url, nats.UserInfo(user, password), nats.NoReconnect(), nats.CustomInboxPrefix("_INBOX_"+user))
		if err != nil {
			t.Fatalf("%s: connect: %v", user, err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := js.Publish(ctx, subject, data, jetstream.WithMsgID(fmt.Sprintf("forged-%s-%s", user, subject))); err == nil {
			t.Errorf("%s published to %s", user, subject)
		}
	}
	refused("monitor-1", monitorPassword, fake.Topic(), fakeEvent)
	refused("monitor-1", monitorPassword, "audit.revocation.succeeded", fakeRec)
	refused("pipeline-1", pipelinePassword, fake.Topic(), fakeEvent)
	refused("intake-1", intakePassword, "revoke.as1", fakeJob)
	refused("intake-1", intakePassword, "revoke_dlq.as1", fakeJob)
	// A forged planned mark would make the planner skip an event.
	forgedMark := make([]byte, 1024)
	for i := range forgedMark {
		forgedMark[i] = 0xff
	}
	refused("intake-1", intakePassword, "$KV."+bus.KVPlanned+".r.0.0", forgedMark)
	refused("monitor-1", monitorPassword, "$KV."+bus.KVPlanned+".r.0.0", forgedMark)

	// The intake identity cannot change, purge or delete the trail, nor
	// read another identity's replies.
	nc, err := nats.Connect(url, nats.UserInfo("intake-1", intakePassword), nats.NoReconnect(),
		nats.CustomInboxPrefix("_INBOX_intake-1"), nats.PermissionErrOnSubscribe(true))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, subj := range []string{"$JS.API.STREAM.PURGE.AUDIT", "$JS.API.STREAM.DELETE.AUDIT", "$JS.API.STREAM.UPDATE.AUDIT",
		"$JS.API.STREAM.MSG.DELETE.AUDIT", "$JS.API.CONSUMER.DELETE.REVOKE.exec-as1"} {
		if msg, err := nc.Request(subj, []byte(`{}`), time.Second); err == nil {
			t.Errorf("intake identity got an answer from %s: %s", subj, msg.Data)
		}
	}
	sub, err := nc.SubscribeSync("_INBOX_pipeline-1.>")
	if err == nil {
		_, err = sub.NextMsg(time.Second)
	}
	if !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("intake identity subscribed to the pipeline's inbox: %v", err)
	}

	a.idle(30 * time.Second)
	if n := a.streamMsgs(bus.StreamLifecycle); n != 1 {
		t.Errorf("LIFECYCLE holds %d events, want the one real one", n)
	}
	if got := peer.Succeeded(); got["victim@example.com"] != 0 || len(peer.Requests()) != 1 {
		t.Errorf("the authorization server saw %d requests (%v); want only the real one", len(peer.Requests()), got)
	}
	if recs := a.audit(audit.Filter{EventID: "okta:forged-1"}); len(recs) != 0 {
		t.Errorf("forged records in the index: %+v", recs)
	}
	// Each refusal is on record with where it came from (written as the
	// server refuses, so poll for the last ones).
	tried := map[string]bool{}
	check := func() bool {
		clear(tried)
		for _, r := range a.audit(audit.Filter{Type: string(audit.TypeAuthFailed)}) {
			var d struct {
				Remote string `json:"remote"`
			}
			_ = json.Unmarshal(r.Detail, &d)
			if r.Source != "nats" || d.Remote != "127.0.0.1" {
				continue
			}
			for _, what := range []string{"lifecycle.okta.deprovisioned", "audit.revocation.succeeded", "revoke.as1", "STREAM.PURGE.AUDIT", "_INBOX_pipeline-1", "monitor-1", "intake-1"} {
				if strings.Contains(r.Error, what) {
					tried[what] = true
				}
			}
			if strings.Contains(strings.ToLower(r.Error), "authentication") {
				tried["authentication"] = true
			}
		}
		return len(tried) == 8
	}
	deadline := time.Now().Add(20 * time.Second)
	for !check() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(tried) != 8 {
		t.Errorf("the NATS refusals on record name %v; want every attempt, who and from where", tried)
	}
	if err := a.stop(); err != nil { // its last checkpoint signs the head
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := cli([]string{"audit", "verify", "--data-dir", cfgA.DataDir, "--public-key", pinnedKey(t, cfgA.DataDir)}, &out, &errOut); code != 0 {
		t.Errorf("audit verify exit %d: %s %s", code, out.String(), errOut.String())
	}
}

// A listener without users, or beyond loopback without TLS, is refused at
// load time.
func TestNATSListenerNeedsAuthAndTLS(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"nats: { listen: 127.0.0.1:4222 }", "needs nats.users"},
		{"nats: { listen: 0.0.0.0:4222, users: [ { name: a, password: aaaaaaaaaaaaaaaaaaaa, roles: [intake] } ] }", "needs nats.tls"},
		{"nats: { listen: 127.0.0.1:4222, users: [ { name: a, password: short, roles: [intake] } ] }", "shorter than 16"},
		{"nats: { listen: 127.0.0.1:4222, users: [ { name: a, password: aaaaaaaaaaaaaaaaaaaa, roles: [root] } ] }", `"root" is not one of`},
		{"nats: { urls: [ nats://nats.internal:4222 ], user: a, password: b }", "use tls://"},
		{"nats: { urls: [ tls://nats.internal:4222 ] }", "set nats credentials"},
		{"nats: { urls: [ tls://u:p@nats.internal:4222 ], user: a, password: b }", "carries credentials"},
	} {
		_, err := config.Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want an error with %q, got %v", tc.yaml, tc.want, err)
		}
	}
	ok := "nats: { listen: 127.0.0.1:4222, users: [ { name: a, password: aaaaaaaaaaaaaaaaaaaa, roles: [intake] } ] }"
	if _, err := config.Parse([]byte(ok)); err != nil {
		t.Errorf("loopback listener with a user: %v", err)
	}
}
