package main

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/ssf/ssftest"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

const ssfMgmtToken = "ssf-management-token-0123456789"

// The worker creates its own push stream at an SSF 1.0 transmitter (which
// checks every management request): pointed at public_url/ssf/events with a
// token the worker generated, the events it acts on requested. The
// transmitter's verification SET arrives and is on record; a
// session-revoked SET on the stream revokes; a delivery without the
// stream's token is refused; a stream-updated SET (paused) is on record;
// and a stream deleted at the transmitter is created again.
func TestManagedSSFStream(t *testing.T) {
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	addr := freeAddr(t)
	workerURL := "http://" + addr
	tr := ssftest.New(t, ssftest.Options{ManagementToken: ssfMgmtToken, Audience: testPublicURL,
		Route: func(u string) string { return strings.Replace(u, testPublicURL, workerURL, 1) }})
	cfg := testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email"))
	cfg.SSF.Transmitters = []config.SSFTransmitterConfig{{Issuer: tr.Issuer, JWKSURI: tr.JWKSURL(), AllowInsecureHTTP: true,
		Stream: &config.SSFStreamConfig{Auth: config.AuthConfig{Type: "bearer", Token: ssfMgmtToken}, ReconcileInterval: time.Second,
			VerifyEvery: time.Hour, VerifyWithin: 30 * time.Second, RotateEvery: 720 * time.Hour}}}
	cfg.SetListen(addr)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, cfg)
	setJWKS(peer, w)

	eventually(t, 30*time.Second, "the stream created and verified", func() bool {
		for _, r := range w.audit(audit.Filter{Type: string(audit.TypeStream)}) {
			if r.Outcome == "verified" {
				return true
			}
		}
		return false
	})
	s := tr.Stream()
	if s == nil || s.EndpointURL != testPublicURL+"/ssf/events" || s.Method != "urn:ietf:rfc:8935" ||
		!strings.HasPrefix(s.Authorization, "Bearer ") || len(s.EventsRequested) < 5 {
		t.Fatalf("stream at the transmitter: %+v", s)
	}
	if p := tr.Problems(); len(p) > 0 {
		t.Fatalf("the transmitter saw wrong requests: %v", p)
	}

	code, err := tr.Push(map[string]any{"format": "email", "email": "kim@example.com"},
		"https://schemas.openid.net/secevent/caep/event-type/session-revoked", map[string]any{"initiating_entity": "policy"})
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("session-revoked on the stream: %d %v", code, err)
	}
	eventually(t, 30*time.Second, "kim revoked", func() bool { return peer.Succeeded()["kim@example.com"] == 1 })

	// Someone else's delivery, without the stream's token.
	req, _ := http.NewRequest(http.MethodPost, w.url+"/ssf/events", bytes.NewReader([]byte("a.b.c")))
	req.Header.Set("Content-Type", "application/secevent+jwt")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode == http.StatusAccepted {
		t.Errorf("a delivery without the stream token: %v %v", resp, err)
	}

	if code, err := tr.SetStatus("paused", "maintenance"); err != nil || code != http.StatusAccepted {
		t.Fatalf("stream-updated: %d %v", code, err)
	}
	eventually(t, 30*time.Second, "the pause on record", func() bool {
		for _, r := range w.audit(audit.Filter{Type: string(audit.TypeStream)}) {
			if r.Outcome == "status_paused" {
				return true
			}
		}
		return false
	})

	// The CLI reads the stream at the transmitter; what needs the shared
	// state says where to run it.
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := writeFile(cfgFile, fmt.Sprintf(`data_dir: %s
public_url: %s
ssf:
  transmitters:
    - issuer: %s
      jwks_uri: %s
      allow_insecure_http: true
      stream: { auth: { type: bearer, token: %s } }
`, cfg.DataDir, testPublicURL, tr.Issuer, tr.JWKSURL(), ssfMgmtToken)); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := cli([]string{"ssf", "streams", "list", "--config", cfgFile}, &out, &errb); code != 0 || !strings.Contains(out.String(), tr.Stream().ID) ||
		!strings.Contains(out.String(), "true") {
		t.Errorf("ssf streams list: %d %s %s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := cli([]string{"ssf", "streams", "status", "--config", cfgFile}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"paused"`) {
		t.Errorf("ssf streams status: %d %s %s", code, out.String(), errb.String())
	}
	errb.Reset()
	if code := cli([]string{"ssf", "streams", "verify", "--config", cfgFile}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "reconciles its streams") {
		t.Errorf("ssf streams verify beside the running worker: %d %s", code, errb.String())
	}

	old := tr.Stream().ID
	tr.DeleteStream()
	eventually(t, 30*time.Second, "the stream created again", func() bool { s := tr.Stream(); return s != nil && s.ID != old })
	if p := tr.Problems(); len(p) > 0 {
		t.Errorf("the transmitter saw wrong requests: %v", p)
	}
}

// A poll stream the worker creates: the transmitter names the endpoint, the
// worker polls it with its management credentials, the verification and a
// session-revoked SET come through it, and everything taken is
// acknowledged.
func TestManagedSSFPollStream(t *testing.T) {
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	tr := ssftest.New(t, ssftest.Options{ManagementToken: ssfMgmtToken, Audience: testPublicURL})
	cfg := testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email"))
	cfg.SSF.Transmitters = []config.SSFTransmitterConfig{{Issuer: tr.Issuer, JWKSURI: tr.JWKSURL(), AllowInsecureHTTP: true, PollInterval: 100 * time.Millisecond,
		Stream: &config.SSFStreamConfig{Delivery: "poll", Auth: config.AuthConfig{Type: "bearer", Token: ssfMgmtToken}, ReconcileInterval: time.Second,
			VerifyEvery: time.Hour, VerifyWithin: 30 * time.Second, RotateEvery: 720 * time.Hour}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, cfg)
	setJWKS(peer, w)
	eventually(t, 30*time.Second, "the poll stream created and verified", func() bool {
		for _, r := range w.audit(audit.Filter{Type: string(audit.TypeStream)}) {
			if r.Outcome == "verified" {
				return true
			}
		}
		return false
	})
	if s := tr.Stream(); s == nil || s.Method != "urn:ietf:rfc:8936" || !strings.HasPrefix(s.EndpointURL, tr.Server.URL+"/ssf/poll/") {
		t.Fatalf("stream at the transmitter: %+v", s)
	}
	if _, err := tr.Push(map[string]any{"format": "email", "email": "lee@example.com"},
		"https://schemas.openid.net/secevent/risc/event-type/account-disabled", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "lee revoked", func() bool { return peer.Succeeded()["lee@example.com"] == 1 })
	eventually(t, 30*time.Second, "every SET acknowledged", func() bool { return tr.Queued() == 0 })
	if p := tr.Problems(); len(p) > 0 {
		t.Errorf("the transmitter saw wrong requests: %v", p)
	}
}
