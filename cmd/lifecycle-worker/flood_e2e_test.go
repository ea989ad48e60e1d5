package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// floodFor is how long TestFloodOfBadRequests floods (LW_FLOOD_SECONDS
// overrides it, e.g. to measure longer).
func floodFor() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("LW_FLOOD_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 30 * time.Second
}

// dirBytes is the total size of the files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// setSigner signs SETs as a transmitter whose JWKS the worker trusts.
type setSigner struct {
	issuer string
	signer jose.Signer
	jwks   []byte
}

func newSETSigner(t *testing.T, issuer string) *setSigner {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "flood-tr"}},
		(&jose.SignerOptions{}).WithType("secevent+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "flood-tr", Algorithm: "ES256", Use: "sig"}}})
	return &setSigner{issuer: issuer, signer: sig, jwks: jwks}
}

func (s *setSigner) sign(t *testing.T, jti, email string) string {
	t.Helper()
	return s.signClaims(t, map[string]any{"iss": s.issuer, "jti": jti, "iat": time.Now().Unix(), "aud": testPublicURL,
		"sub_id": map[string]any{"format": "email", "email": email},
		"events": map[string]any{"https://schemas.openid.net/secevent/risc/event-type/account-disabled": map[string]any{}}})
}

func (s *setSigner) signClaims(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, _ := json.Marshal(claims)
	jws, err := s.signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

// A flood of large bad requests at every public endpoint, from eight
// addresses, as fast as the machine allows: the data dir grows by less than
// 5 MB; every refusal is counted in lw_refusals_total and accounted for in
// the trail (one by one, or in the per-source summaries); and a real hook
// and a real transmitter sent during the flood are accepted and revoked.
func TestFloodOfBadRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("floods for 30 s")
	}
	const issuer = "https://idp.flood.example"
	const scimToken = "scim-token-for-flood-0123456789"
	tr := newSETSigner(t, issuer)
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksFile, tr.jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	peer := gtrtest.New(gtrtest.Options{Issuer: testPublicURL})
	defer peer.Close()
	cfg := testConfig(t, t.TempDir(), gtrTarget("as1", peer.URL, "email"))
	cfg.SSF.Transmitters = []config.SSFTransmitterConfig{{Issuer: issuer, JWKSFile: jwksFile}}
	cfg.SCIM.Tokens = []string{scimToken}
	w := startWorker(t, cfg)
	setJWKS(peer, w)
	w.idle(30 * time.Second)
	before := dirBytes(t, cfg.DataDir)

	// Forged SETs: garbage, and a well-formed JWS with huge headers and
	// claims signed by a key nobody trusts.
	stranger := newSETSigner(t, strings.Repeat("https://evil.example/", 2000))
	hugeSET := stranger.sign(t, strings.Repeat("j", 30000), strings.Repeat("x", 20000)+"@example.com")
	longPath := "/scim/v2/" + strings.Repeat("A", 60000)
	bigBody := strings.Repeat("B", 200<<10)
	type attack struct {
		source, method, path, ctype, auth, body string
	}
	attacks := []attack{
		{"okta-hook", "POST", "/hooks/okta", "application/json", "not-the-secret-0123456789", bigBody},
		{"scim", "GET", longPath, "", "Bearer wrong-scim-token", ""},
		{"scim", "POST", "/scim/v2/Users", "application/scim+json", "Bearer wrong-scim-token", bigBody},
		{"ssf", "POST", "/ssf/events", "application/secevent+jwt", "", hugeSET},
		{"ssf", "POST", "/ssf/events", "application/secevent+jwt", "", strings.Repeat("eyJ", 20000)},
		{"api", "GET", "/v1/audit/records?subject=" + strings.Repeat("s", 4000), "", "Bearer wrong-audit-token-0123456789", ""},
	}

	ctx, stop := context.WithTimeout(context.Background(), floodFor())
	defer stop()
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DialContext: (&net.Dialer{LocalAddr: local}).DialContext, MaxIdleConnsPerHost: 4}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := i; ctx.Err() == nil; n++ {
				a := attacks[n%len(attacks)]
				req, _ := http.NewRequest(a.method, w.url+a.path, strings.NewReader(a.body))
				if a.ctype != "" {
					req.Header.Set("Content-Type", a.ctype)
				}
				if a.auth != "" {
					req.Header.Set("Authorization", a.auth)
				}
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode < 400 || resp.StatusCode >= 500 {
					t.Errorf("%s %s answered %d", a.method, a.path[:min(len(a.path), 40)], resp.StatusCode)
				}
				sent.Add(1)
			}
		}()
	}

	// The real IdP and the real transmitter, during the flood.
	var real []string
	for n := 0; ctx.Err() == nil; n++ {
		hookUser, setUser := fmt.Sprintf("hook%02d@example.com", n), fmt.Sprintf("set%02d@example.com", n)
		if resp := w.postHook(deactivation(fmt.Sprintf("flood-%d", n), hookUser), testHookSecret); resp.StatusCode != http.StatusOK {
			t.Errorf("real hook during the flood: %d", resp.StatusCode)
		}
		if code, body := w.postSET(tr.sign(t, fmt.Sprintf("real-%d", n), setUser), ""); code != http.StatusAccepted {
			t.Errorf("real SET during the flood: %d %s", code, body)
		}
		real = append(real, hookUser, setUser)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second): // an IdP's pace, not a synchronisation
		}
	}
	wg.Wait()
	w.idle(60 * time.Second)
	metrics := w.scrape()
	if err := w.stop(); err != nil { // intake closes; the budget writes its last summaries
		t.Fatal(err)
	}
	grew := dirBytes(t, cfg.DataDir) - before

	counted := 0.0
	for k, v := range metrics {
		if strings.HasPrefix(k, "lw_refusals_total{") {
			counted += v
		}
	}
	one, held := 0, 0
	perSource := map[string]int{}
	var biggest int
	for _, typ := range []audit.Type{audit.TypeAuthFailed, audit.TypeEventRejected} {
		for _, r := range w.audit(audit.Filter{Type: string(typ)}) {
			raw, _ := json.Marshal(r)
			biggest = max(biggest, len(raw))
			var d struct {
				HeldBack int    `json:"held_back"`
				Remote   string `json:"remote"`
			}
			_ = json.Unmarshal(r.Detail, &d)
			if strings.HasPrefix(r.ID, "budget/") {
				held += d.HeldBack
				perSource[r.Source+" "+d.Remote] += d.HeldBack
			} else {
				one++
			}
		}
	}
	t.Logf("flood: %d bad requests in %s (%d failed to send), %d refusal records one by one, %d summarised in %d per-source summaries; data dir grew %d bytes; largest refusal record %d bytes",
		sent.Load(), floodFor(), failed.Load(), one, held, len(perSource), grew, biggest)
	if sent.Load() < 1000 {
		t.Errorf("only %d bad requests sent: not a flood", sent.Load())
	}
	if int64(counted) != sent.Load() || one+held != int(sent.Load()) {
		t.Errorf("%d bad requests answered, %.0f counted in lw_refusals_total, %d on record (%d one by one + %d summarised)",
			sent.Load(), counted, one+held, one, held)
	}
	for i := range 8 {
		addr := fmt.Sprintf("127.0.0.%d", 10+i)
		for _, src := range []string{"okta-hook", "scim", "ssf", "api"} {
			if perSource[src+" "+addr] == 0 {
				t.Errorf("no summary of %s refusals from %s", src, addr)
			}
		}
	}
	if grew > 5<<20 {
		t.Errorf("the data dir grew by %d bytes, want < 5 MB", grew)
	}
	if biggest > 4<<10 {
		t.Errorf("a refusal record of %d bytes", biggest)
	}
	ok := peer.Succeeded()
	for _, u := range real {
		if ok[u] != 1 {
			t.Errorf("%s revoked %d times, want once", u, ok[u])
		}
	}
}
