package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// joseTransmit signs SETs with npm jose (test/jose/transmit.mjs) and returns
// the transmitter's JWKS and the compact SETs.
func joseTransmit(t *testing.T, kid string, sets ...map[string]any) (json.RawMessage, []string) {
	t.Helper()
	return joseSign(t, kid, "secevent+jwt", sets...)
}

// joseSign signs each claims object with npm jose as a JWT of type typ, and
// returns the signer's JWKS and the compact JWTs.
func joseSign(t *testing.T, kid, typ string, sets ...map[string]any) (json.RawMessage, []string) {
	t.Helper()
	joseDir, _ := filepath.Abs("../../test/jose")
	if _, err := os.Stat(filepath.Join(joseDir, "node_modules", "jose")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("npm jose is not installed in %s (run npm ci there): %v", joseDir, err)
		}
		t.Skip("npm jose not installed: run `npm ci --prefix test/jose`")
	}
	if sets == nil {
		sets = []map[string]any{} // just the key
	}
	in, _ := json.Marshal(map[string]any{"kid": kid, "typ": typ, "sets": sets})
	cmd := exec.Command("node", filepath.Join(joseDir, "transmit.mjs"))
	cmd.Dir = joseDir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("transmit.mjs: %v\n%s", err, stderr.String())
	}
	var res struct {
		JWKS json.RawMessage `json:"jwks"`
		Sets []string        `json:"sets"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Sets) != len(sets) {
		t.Fatalf("transmit.mjs said %s (%v)", out, err)
	}
	return res.JWKS, res.Sets
}

func (w *worker) postSET(set, bearer string) (int, string) {
	w.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.url+"/ssf/events", strings.NewReader(set))
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	return resp.StatusCode, body.String()
}

// A transmitter built on npm jose pushes a RISC account-disabled SET and a
// CAEP session-revoked SET (complex subject): both are verified against its
// JWKS, fetched over HTTP, and revoked at the AS; a retransmission revokes
// nothing twice; a SET with a changed payload is refused as
// authentication_failed, and everything is on record.
func TestSSFTransmitterWithJose(t *testing.T) {
	const issuer = "https://idp.e2e.example"
	const streamToken = "ssf-stream-token-0123456789"
	now := time.Now().Unix()
	jwks, sets := joseTransmit(t, "tr-2026",
		map[string]any{"iss": issuer, "jti": "risc-1", "iat": now, "aud": testPublicURL, "txn": "t-1",
			"sub_id": map[string]any{"format": "email", "email": "eve@example.com"},
			"events": map[string]any{"https://schemas.openid.net/secevent/risc/event-type/account-disabled": map[string]any{"reason": "hijacking"}}},
		map[string]any{"iss": issuer, "jti": "caep-1", "iat": now, "aud": []string{testPublicURL},
			"sub_id": map[string]any{"format": "complex", "user": map[string]any{"format": "email", "email": "finn@example.com"},
				"session": map[string]any{"format": "opaque", "id": "sess-1"}},
			"events": map[string]any{"https://schemas.openid.net/secevent/caep/event-type/session-revoked": map[string]any{
				"initiating_entity": "policy", "reason_admin": map[string]string{"en": "impossible travel"}, "event_timestamp": now - 5}}},
	)
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	defer keys.Close()
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	cfg := testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email"))
	cfg.SSF.Transmitters = []config.SSFTransmitterConfig{{Issuer: issuer, JWKSURI: keys.URL, AllowInsecureHTTP: true, Tokens: []string{streamToken}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, cfg)
	setJWKS(peer, w)

	if code, body := w.postSET(sets[0], ""); code != http.StatusUnauthorized || !strings.Contains(body, `"err":"authentication_failed"`) {
		t.Fatalf("without the stream token: %d %s", code, body)
	}
	for _, s := range sets {
		if code, body := w.postSET(s, streamToken); code != http.StatusAccepted || body != "" {
			t.Fatalf("SET: %d %q", code, body)
		}
	}
	// The transmitter did not see our 202 and sends the first again.
	if code, _ := w.postSET(sets[0], streamToken); code != http.StatusAccepted {
		t.Fatalf("retransmission: %d", code)
	}
	// The first SET with its subject changed after signing.
	parts := strings.Split(sets[0], ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	payload = bytes.Replace(payload, []byte("eve@example.com"), []byte("ceo@example.com"), 1)
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	if code, body := w.postSET(forged, streamToken); code != http.StatusBadRequest || !strings.Contains(body, `"err":"authentication_failed"`) {
		t.Fatalf("forged: %d %s", code, body)
	}
	w.idle(30 * time.Second)

	ok := peer.Succeeded()
	if len(ok) != 2 || ok["eve@example.com"] != 1 || ok["finn@example.com"] != 1 {
		t.Fatalf("AS saw %v, want eve and finn once each", ok)
	}
	recs := w.audit(audit.Filter{Subject: "eve@example.com"})
	var seen []string
	for _, r := range recs {
		seen = append(seen, string(r.Type)+"/"+r.Outcome)
		if r.Type == audit.TypeEventReceived && r.Source != "ssf" {
			t.Errorf("received from %q", r.Source)
		}
	}
	if got := strings.Join(seen, ","); !strings.Contains(got, "event.received/accepted") || !strings.Contains(got, "event.received/duplicate") ||
		!strings.Contains(got, "revocation.succeeded/succeeded") {
		t.Errorf("eve's trail: %s", got)
	}
	refused := w.audit(audit.Filter{Type: string(audit.TypeEventRejected)})
	failed := w.audit(audit.Filter{Type: string(audit.TypeAuthFailed)})
	if len(refused) != 1 || refused[0].Source != "ssf" || len(failed) != 1 || strings.Contains(string(failed[0].Detail), streamToken) {
		t.Errorf("refusals on record: %+v / %+v", refused, failed)
	}
}

// A stream read by polling (RFC 8936): the worker fetches the SETs a
// transmitter holds for it, revokes, and acknowledges them in its next poll.
func TestSSFPollWithJose(t *testing.T) {
	const issuer = "https://idp.poll.example"
	jwks, sets := joseTransmit(t, "poll-key", map[string]any{"iss": issuer, "jti": "p-1", "iat": time.Now().Unix(), "aud": testPublicURL,
		"sub_id": map[string]any{"format": "email", "email": "ida@example.com"},
		"events": map[string]any{"https://schemas.openid.net/secevent/risc/event-type/account-purged": map[string]any{}}})
	var mu sync.Mutex
	offered, acked := map[string]string{"p-1": sets[0]}, []string{}
	tr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/jwks" {
			_, _ = w.Write(jwks)
			return
		}
		var req struct {
			Ack []string `json:"ack"`
		}
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer poll-token-0123456789" || json.NewDecoder(r.Body).Decode(&req) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, jti := range req.Ack {
			acked = append(acked, jti)
			delete(offered, jti)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"sets": offered, "moreAvailable": false})
	}))
	defer tr.Close()
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	cfg := testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email"))
	cfg.SSF.Transmitters = []config.SSFTransmitterConfig{{Issuer: issuer, JWKSURI: tr.URL + "/jwks", PollURL: tr.URL + "/poll",
		PollToken: "poll-token-0123456789", PollInterval: 100 * time.Millisecond, AllowInsecureHTTP: true}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, cfg)
	setJWKS(peer, w)
	eventually(t, 30*time.Second, "the polled SET revoked and acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return peer.Succeeded()["ida@example.com"] == 1 && len(acked) == 1 && acked[0] == "p-1"
	})
	w.idle(30 * time.Second)
	if recs := w.audit(audit.Filter{Subject: "ida@example.com", Type: string(audit.TypeEventReceived)}); len(recs) != 1 || recs[0].Source != "ssf" {
		t.Errorf("receipt %+v", recs)
	}
}

// `ssf check` fetches each transmitter's keys and probes a poll endpoint
// without taking anything from it; a refused token fails the check.
func TestSSFCheck(t *testing.T) {
	jwks, _ := joseTransmit(t, "check-key")
	var probes []string
	tr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			_, _ = w.Write(jwks)
			return
		}
		body, _ := io.ReadAll(r.Body)
		probes = append(probes, string(body))
		if r.Header.Get("Authorization") != "Bearer right-token-0123456789" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"sets":{},"moreAvailable":false}`))
	}))
	defer tr.Close()
	dir := t.TempDir()
	write := func(token string) string {
		f := filepath.Join(dir, token+".yaml")
		y := fmt.Sprintf("data_dir: %s\nssf:\n  transmitters:\n    - issuer: https://push.example\n      jwks_uri: %s/jwks\n      allow_insecure_http: true\n"+
			"    - issuer: https://poll.example\n      jwks_uri: %s/jwks\n      poll_url: %s/poll\n      poll_token: %s\n      allow_insecure_http: true\n", dir, tr.URL, tr.URL, tr.URL, token)
		if err := os.WriteFile(f, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	var out, errb bytes.Buffer
	if code := cli([]string{"ssf", "check", "--config", write("right-token-0123456789")}, &out, &errb); code != 0 || strings.Count(out.String(), " ok") != 2 {
		t.Fatalf("check: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if len(probes) != 1 || probes[0] != `{"maxEvents":0,"returnImmediately":true}` {
		t.Errorf("poll probe %v: must take and acknowledge nothing", probes)
	}
	out.Reset()
	if code := cli([]string{"ssf", "check", "--config", write("wrong-token-0123456789")}, &out, &errb); code == 0 || !strings.Contains(out.String(), "FAILED: poll endpoint") {
		t.Errorf("wrong token: exit %d\n%s", code, out.String())
	}
}
