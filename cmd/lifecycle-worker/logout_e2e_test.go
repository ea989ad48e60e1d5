package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/logout/logouttest"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// One Universal Logout from an Okta org reaches every MCP authorization
// server behind the worker, each by its own channel: Global Token
// Revocation, OIDC back-channel logout and a CAEP SET. The trail names the
// signal ("Universal Logout from <org> (app …)"), and the offboarding view
// shows all three confirmed. A request signed by npm jose for a second
// issuer (keys from a file) is taken too; an expired one is refused with
// 401 and an auth.failed record.
func TestUniversalLogoutRevokesEverywhere(t *testing.T) {
	idp := logouttest.Okta(t)
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	var mu sync.Mutex
	got := map[string]int{}
	capture := func(name string, status int) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			got[name]++
			if name == "backchannel" {
				v, _ := url.ParseQuery(string(body))
				if v.Get("logout_token") == "" {
					got["bad-backchannel"]++
				}
			}
			mu.Unlock()
			w.WriteHeader(status)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	bcl, ssf := capture("backchannel", 200), capture("ssf", 202)
	targets := gtrTarget("gtr", peer.URL, "email") +
		"  - { name: bcl, driver: backchannel, endpoint: " + bcl.URL + "/logout, audience: mcp-as-client, subject_format: iss_sub, allow_insecure_http: true }\n" +
		"  - { name: ssf, driver: ssfpush, endpoint: " + ssf.URL + "/events, audience: https://receiver.example, allow_insecure_http: true }\n"
	// The GTR target's authorization server confirms each revocation with a
	// signed CAEP session-revoked SET (GTR draft -06 §5); npm jose signs
	// them where it is installed (always in CI), as a cross-check.
	completion := func(jti, email string) map[string]any {
		return map[string]any{"iss": "https://as.gtr.example", "jti": jti, "iat": time.Now().Unix(), "aud": testPublicURL,
			"sub_id": map[string]any{"format": "email", "email": email},
			"events": map[string]any{"https://schemas.openid.net/secevent/caep/event-type/session-revoked": map[string]any{"event_timestamp": time.Now().Unix()}}}
	}
	var asJWKS []byte
	var completions []string
	if _, err := os.Stat("../../test/jose/node_modules/jose"); err == nil || os.Getenv("CI") != "" {
		asJWKS, completions = joseSign(t, "as-1", "secevent+jwt", completion("done-1", "jane@example.com"), completion("stray-1", "nobody@example.com"))
	} else {
		asSigner := newSETSigner(t, "https://as.gtr.example")
		asJWKS = asSigner.jwks
		completions = []string{asSigner.signClaims(t, completion("done-1", "jane@example.com")), asSigner.signClaims(t, completion("stray-1", "nobody@example.com"))}
	}
	asKeys := filepath.Join(t.TempDir(), "as-jwks.json")
	if err := os.WriteFile(asKeys, asJWKS, 0o600); err != nil {
		t.Fatal(err)
	}
	targets = strings.Replace(targets, "    max_attempts: 5\n", "    max_attempts: 5\n    confirmations: { issuer: \"https://as.gtr.example\", jwks_file: \""+asKeys+"\", window: 1h }\n", 1)
	cfg := testConfig(t, t.TempDir(), targets)
	cfg.UniversalLogout.Issuers = []config.LogoutIssuerConfig{{Issuer: idp.Issuer, Kind: "sessions_revoked", AllowInsecureHTTP: true}}

	// A second issuer whose requests npm jose signs (skipped without npm).
	var joseToken string
	joseIssuer := "https://idp.jose.example"
	endpoint := testPublicURL + "/global-token-revocation"
	if _, err := os.Stat("../../test/jose/node_modules/jose"); err == nil || os.Getenv("CI") != "" {
		now := time.Now().Unix()
		keys, toks := joseSign(t, "jose-1", "global-token-revocation+jwt", map[string]any{"iss": joseIssuer, "sub": "0oajose", "aud": endpoint,
			"jti": uuid.NewString(), "iat": now, "nbf": now - 300, "exp": now + 300})
		file := filepath.Join(t.TempDir(), "jose-jwks.json")
		if err := os.WriteFile(file, keys, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.UniversalLogout.Issuers = append(cfg.UniversalLogout.Issuers, config.LogoutIssuerConfig{Issuer: joseIssuer, JWKSFile: file, Kind: "sessions_revoked"})
		joseToken = toks[0]
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, cfg)
	setJWKS(peer, w)

	jane := map[string]any{"format": "aliases", "identifiers": []any{
		map[string]any{"format": "email", "email": "jane@example.com"},
		map[string]any{"format": "iss_sub", "iss": idp.Issuer, "sub": "00ujane"}}}
	req := idp.Request(t, w.url+"/global-token-revocation", jane)
	// The JWT's aud is the endpoint's public URL, not the address we dial.
	req.Header.Set("Authorization", "Bearer "+idp.Token(t, idp.Claims(endpoint), "global-token-revocation+jwt"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("Universal Logout answered %d", resp.StatusCode)
	}
	post := func(token string, body string) int {
		req, _ := http.NewRequest(http.MethodPost, w.url+"/global-token-revocation", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if joseToken != "" {
		if code := post(joseToken, `{"sub_id":{"format":"email","email":"jo@example.com"}}`); code != http.StatusNoContent {
			t.Errorf("the jose-signed request: %d", code)
		}
	}
	expired := idp.Claims(endpoint)
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	if code := post(idp.Token(t, expired, "global-token-revocation+jwt"), string(idp.Body(jane))); code != http.StatusUnauthorized {
		t.Errorf("an expired request: %d", code)
	}
	w.idle(30 * time.Second)

	if ok := peer.Succeeded(); ok["jane@example.com"] != 1 {
		t.Errorf("GTR target saw %v", ok)
	}
	mu.Lock()
	if got["backchannel"] < 1 || got["ssf"] < 1 || got["bad-backchannel"] != 0 {
		t.Errorf("back-channel and SSF targets saw %v", got)
	}
	mu.Unlock()
	if joseToken != "" && peer.Succeeded()["jo@example.com"] != 1 {
		t.Errorf("the jose-signed logout was not revoked: %v", peer.Succeeded())
	}

	recs := w.audit(audit.Filter{Subject: "jane@example.com", Type: string(audit.TypeEventReceived)})
	if len(recs) != 1 || recs[0].Source != "universal-logout" {
		t.Fatalf("jane's receipt: %+v", recs)
	}
	r, err := audit.OpenReader(cfg.Audit.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	view := func() *audit.Offboarding {
		t.Helper()
		o, err := r.Offboarding(context.Background(), recs[0].EventID, time.Hour)
		if err != nil || o == nil {
			t.Fatalf("offboarding: %v %v", o, err)
		}
		return o
	}
	o := view()
	if !strings.HasPrefix(o.Cause, "Universal Logout from "+idp.Issuer) || o.Status != "complete" || len(o.Targets) != 3 ||
		len(o.AwaitingConfirmation) != 1 || o.AwaitingConfirmation[0] != "gtr" {
		t.Errorf("offboarding before the confirmation %+v", o)
	}
	// The authorization server says it is done, signing a SET; a stray one
	// for someone we never revoked is on record as ignored.
	for _, set := range completions {
		if code, body := w.postSET(set, ""); code != http.StatusAccepted {
			t.Fatalf("completion SET: %d %s", code, body)
		}
	}
	w.idle(30 * time.Second)
	o = view()
	for _, tg := range o.Targets {
		want := ""
		if tg.Target == "gtr" {
			want = "confirmed"
			if tg.ConfirmedBy == nil || tg.ConfirmedBy.Issuer != "https://as.gtr.example" || tg.ConfirmedBy.JTI != "done-1" {
				t.Errorf("gtr confirmed by %+v", tg.ConfirmedBy)
			}
		}
		if tg.Status != "succeeded" || tg.Confirmation != want {
			t.Errorf("target %s: %s, confirmation %q", tg.Target, tg.Status, tg.Confirmation)
		}
	}
	if len(o.AwaitingConfirmation) != 0 {
		t.Errorf("still awaiting %v", o.AwaitingConfirmation)
	}
	if n := len(w.audit(audit.Filter{Type: string(audit.TypeRevocationConfirmed)})); n != 1 {
		t.Errorf("%d revocation.confirmed records", n)
	}
	if stray := w.audit(audit.Filter{Subject: "nobody@example.com"}); len(stray) != 1 || stray[0].Type != audit.TypeEventIgnored {
		t.Errorf("the stray confirmation: %+v", stray)
	}
	if peer.Succeeded()["nobody@example.com"] != 0 {
		t.Error("a confirmation SET caused a revocation")
	}
	refused := w.audit(audit.Filter{Type: string(audit.TypeAuthFailed)})
	if len(refused) != 1 || refused[0].Source != "universal-logout" || refused[0].HTTPStatus != 401 || !bytes.Contains(refused[0].Detail, []byte(idp.Issuer)) {
		t.Errorf("refusals on record: %+v", refused)
	}
}
