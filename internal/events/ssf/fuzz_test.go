package ssf

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events/eventstest"
)

// Any body at /ssf/events: never a crash; a SET nobody signed is never
// accepted (202) and yields no event; every refusal is RFC 8935's JSON.
func FuzzSET(f *testing.F) {
	p := newTransmitter(&testing.T{})
	f.Add(p.sign(claims(evRevoke, map[string]any{}, nil), "secevent+jwt", nil, ""))
	f.Add(`eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.`)
	f.Add(`{"payload":"e30","signatures":[{"protected":"e30","signature":""}]}`)
	f.Add(`..`)
	f.Add(strings.Repeat("a.", 3))
	dir := f.TempDir()
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.rsaKey.PublicKey, KeyID: p.kid, Algorithm: "RS256", Use: "sig"}}})
	file := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(file, jwks, 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		m := &eventstest.Broker{}
		r, err := New(Config{Transmitters: []Transmitter{{Issuer: iss, JWKSFile: file}}, Audience: []string{aud},
			Mapping: DefaultMapping(), MaxBody: 64 << 10, PublishTimeout: time.Second, Publisher: m, Recorder: m,
			Client: http.DefaultClient, Now: time.Now, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/ssf/events", strings.NewReader(body))
		req.Header.Set("Content-Type", setType)
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Code == http.StatusAccepted {
			// Only a SET signed by the transmitter's key verifies; the
			// seeds hold one, the fuzzer cannot forge another.
			if _, err := jose.ParseSigned(strings.TrimSpace(body), algorithms); err != nil {
				t.Fatalf("accepted something that is not a JWS: %q", body)
			}
			return
		}
		if len(m.Events) != 0 {
			t.Fatalf("refused (%d) but published %v", rec.Code, m.Events)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("refusal %d is not JSON: %s", rec.Code, rec.Body)
		}
	})
}
