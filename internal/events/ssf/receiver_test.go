package ssf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/eventstest"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

const (
	iss      = "https://tr.idp.example"
	aud      = "https://lw.example"
	rsaKid   = "tr-1"
	token    = "stream-auth-token-0123456789"
	evRevoke = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
)

// transmitterPeer signs SETs and serves its JWKS, counting fetches.
type transmitterPeer struct {
	t       *testing.T
	rsaKey  *rsa.PrivateKey
	kid     string
	srv     *httptest.Server
	fetches atomic.Int32
}

func newTransmitter(t *testing.T) *transmitterPeer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &transmitterPeer{t: t, rsaKey: k, kid: rsaKid}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.fetches.Add(1)
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.rsaKey.PublicKey, KeyID: p.kid, Algorithm: "RS256", Use: "sig"}}})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// sign makes a compact JWS of claims with the given typ, signed by key (the
// transmitter's RSA key when nil).
func (p *transmitterPeer) sign(claims map[string]any, typ string, key any, kid string) string {
	p.t.Helper()
	if key == nil {
		key, kid = p.rsaKey, p.kid
	}
	alg := jose.RS256
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = jose.ES256
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		p.t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		p.t.Fatal(err)
	}
	out, _ := obj.CompactSerialize()
	return out
}

func claims(event string, body map[string]any, mut func(map[string]any)) map[string]any {
	c := map[string]any{"iss": iss, "jti": "jti-1", "iat": time.Now().Unix(), "aud": aud,
		"sub_id": map[string]any{"format": "email", "email": "ana@example.com"},
		"events": map[string]any{event: body}}
	if mut != nil {
		mut(c)
	}
	return c
}

func newReceiver(t *testing.T, p *transmitterPeer, m *eventstest.Broker, tokens ...string) *Receiver {
	t.Helper()
	r, err := New(Config{Transmitters: []Transmitter{{Issuer: iss, JWKSURL: p.srv.URL, Tokens: tokens}}, Audience: []string{aud},
		Mapping: DefaultMapping(), MaxBody: 64 << 10, PublishTimeout: time.Second, Publisher: m, Recorder: m,
		Client: p.srv.Client(), Now: time.Now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func post(r http.Handler, set, contentType, auth string) (int, map[string]string) {
	req := httptest.NewRequest(http.MethodPost, "/ssf/events", strings.NewReader(set))
	req.Header.Set("Content-Type", contentType)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	var body map[string]string
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusAccepted && rec.Header().Get("Content-Type") != "application/json" {
		body = map[string]string{"err": "NOT JSON: " + rec.Body.String()}
	}
	return rec.Code, body
}

const setType = "application/secevent+jwt"

// Each CAEP/RISC event we act on becomes one lifecycle event with the
// subject and time the SET gives; the answer is 202 with no body.
func TestMappedEvents(t *testing.T) {
	p := newTransmitter(t)
	for _, c := range []struct {
		event string
		body  map[string]any
		sub   map[string]any
		kind  events.Kind
		want  events.Subject
	}{
		{TypeAccountDisabled, map[string]any{"reason": "hijacking"}, map[string]any{"format": "iss_sub", "iss": "https://idp.example/", "sub": "7375626A"},
			events.KindDeprovisioned, events.Subject{Issuer: "https://idp.example/", ID: "7375626A"}},
		{TypeAccountPurged, map[string]any{}, map[string]any{"format": "email", "email": "bo@example.com"}, events.KindDeprovisioned, events.Subject{Email: "bo@example.com"}},
		{evRevoke, map[string]any{"initiating_entity": "policy", "reason_admin": map[string]string{"en": "Landspeed"}, "event_timestamp": 1615304991},
			map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": "s1"}, "user": map[string]any{"format": "iss_sub", "iss": "https://idp.example/", "sub": "99be"}},
			events.KindSessionsRevoked, events.Subject{Issuer: "https://idp.example/", ID: "99be"}},
		{TypeCredentialChange, map[string]any{"credential_type": "password", "change_type": "update"}, map[string]any{"format": "opaque", "id": "00u1"},
			events.KindCredentialsChanged, events.Subject{ID: "00u1"}},
		{TypeAssuranceLevelChange, map[string]any{"namespace": "NIST-AAL", "current_level": "nist-aal1", "previous_level": "nist-aal2", "change_direction": "decrease"},
			map[string]any{"format": "account", "uri": "acct:cy@example.com"}, events.KindRiskElevated, events.Subject{Login: "cy@example.com"}},
		{TypeAccountEnabled, map[string]any{}, map[string]any{"format": "aliases", "identifiers": []any{map[string]any{"format": "email", "email": "di@example.com"}, map[string]any{"format": "opaque", "id": "00u9"}}},
			events.KindReactivated, events.Subject{Email: "di@example.com", ID: "00u9"}},
	} {
		m := &eventstest.Broker{}
		r := newReceiver(t, p, m)
		set := p.sign(claims(c.event, c.body, func(cl map[string]any) { cl["sub_id"] = c.sub }), "secevent+jwt", nil, "")
		if code, body := post(r, set, setType, ""); code != http.StatusAccepted {
			t.Fatalf("%s: %d %v", c.event, code, body)
		}
		if len(m.Events) != 1 {
			t.Fatalf("%s: %d events", c.event, len(m.Events))
		}
		ev := m.Events[0]
		if ev.Kind != c.kind || ev.Subject != c.want || ev.Source != events.SourceSSF || ev.ID != "ssf:"+iss+":jti-1" || ev.Cause != c.event {
			t.Errorf("%s: event %+v", c.event, ev)
		}
		if ts, ok := c.body["event_timestamp"]; ok && ev.OccurredAt.Unix() != int64(ts.(int)) {
			t.Errorf("%s: occurred %v, want event_timestamp", c.event, ev.OccurredAt)
		}
		if !json.Valid(ev.Raw) || !strings.Contains(string(ev.Raw), `"jti":"jti-1"`) {
			t.Errorf("%s: raw %s", c.event, ev.Raw)
		}
	}
}

// Events we do not act on are answered 202 and put on record as ignored.
func TestIgnoredEvents(t *testing.T) {
	p := newTransmitter(t)
	for _, c := range []struct {
		event string
		body  map[string]any
		sub   map[string]any
	}{
		{"https://schemas.openid.net/secevent/caep/event-type/token-claims-change", map[string]any{"claims": map[string]any{"role": "x"}}, nil},
		{TypeAssuranceLevelChange, map[string]any{"namespace": "NIST-AAL", "current_level": "nist-aal2", "change_direction": "increase"}, nil},
		{TypeVerification, map[string]any{"state": "abc"}, map[string]any{"format": "opaque", "id": "stream-1"}},
		{evRevoke, map[string]any{}, map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": "s1"}}},
		{evRevoke, map[string]any{}, map[string]any{"format": "did", "url": "did:example:1"}},
	} {
		m := &eventstest.Broker{}
		r := newReceiver(t, p, m)
		set := p.sign(claims(c.event, c.body, func(cl map[string]any) {
			if c.sub != nil {
				cl["sub_id"] = c.sub
			}
		}), "secevent+jwt", nil, "")
		if code, body := post(r, set, setType, ""); code != http.StatusAccepted {
			t.Fatalf("%s: %d %v", c.event, code, body)
		}
		if len(m.Events) != 0 || len(m.Records) != 1 || m.Records[0].Type != audit.TypeEventIgnored || m.Records[0].Source != "ssf" {
			t.Errorf("%s: events %v records %+v", c.event, m.Events, m.Records)
		}
	}
}

// Every way a SET can be wrong gets RFC 8935's error form, the right code,
// a record, and no event.
func TestRefusals(t *testing.T) {
	p := newTransmitter(t)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := claims(evRevoke, map[string]any{}, nil)
	with := func(mut func(map[string]any)) map[string]any { return claims(evRevoke, map[string]any{}, mut) }
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, (&jose.SignerOptions{}).WithType("secevent+jwt"))
	hsObj, _ := hs.Sign([]byte(`{"iss":"` + iss + `","jti":"x","iat":1,"aud":"` + aud + `","events":{}}`))
	hsSET, _ := hsObj.CompactSerialize()
	for _, c := range []struct {
		name, set, contentType string
		status                 int
		code                   string
	}{
		{"wrong media type", p.sign(good, "secevent+jwt", nil, ""), "application/jwt", 400, "invalid_request"},
		{"not a JWT", "not.a.jwt", setType, 400, "invalid_request"},
		{"HMAC", hsSET, setType, 400, "invalid_request"},
		{"typ JWT", p.sign(good, "JWT", nil, ""), setType, 400, "invalid_request"},
		{"unknown issuer", p.sign(with(func(c map[string]any) { c["iss"] = "https://evil.example" }), "secevent+jwt", nil, ""), setType, 400, "invalid_issuer"},
		{"unknown kid", p.sign(good, "secevent+jwt", otherRSA, "rotated-away"), setType, 400, "invalid_key"},
		{"forged with the transmitter's kid", p.sign(good, "secevent+jwt", otherRSA, rsaKid), setType, 400, "authentication_failed"},
		{"EC key not in the set", p.sign(good, "secevent+jwt", ec, rsaKid), setType, 400, "authentication_failed"},
		{"wrong audience", p.sign(with(func(c map[string]any) { c["aud"] = []string{"https://other.example"} }), "secevent+jwt", nil, ""), setType, 400, "invalid_audience"},
		{"no jti", p.sign(with(func(c map[string]any) { delete(c, "jti") }), "secevent+jwt", nil, ""), setType, 400, "invalid_request"},
		{"no iat", p.sign(with(func(c map[string]any) { delete(c, "iat") }), "secevent+jwt", nil, ""), setType, 400, "invalid_request"},
		{"from the future", p.sign(with(func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() }), "secevent+jwt", nil, ""), setType, 400, "invalid_request"},
		{"expired", p.sign(with(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), "secevent+jwt", nil, ""), setType, 400, "invalid_request"},
		{"no events", p.sign(with(func(c map[string]any) { c["events"] = map[string]any{} }), "secevent+jwt", nil, ""), setType, 400, "invalid_request"},
		{"no subject", p.sign(with(func(c map[string]any) { delete(c, "sub_id") }), "secevent+jwt", nil, ""), setType, 400, "invalid_request"},
		{"subject without format", p.sign(with(func(c map[string]any) { c["sub_id"] = map[string]any{"email": "x@example.com"} }), "secevent+jwt", nil, ""), setType, 400, "invalid_request"},
		{"email without value", p.sign(with(func(c map[string]any) { c["sub_id"] = map[string]any{"format": "email"} }), "secevent+jwt", nil, ""), setType, 400, "invalid_request"},
	} {
		m := &eventstest.Broker{}
		r := newReceiver(t, p, m)
		code, body := post(r, c.set, c.contentType, "")
		if code != c.status || body["err"] != c.code || body["description"] == "" {
			t.Errorf("%s: %d %v, want %d %s", c.name, code, body, c.status, c.code)
		}
		if len(m.Events) != 0 || len(m.Records) != 1 || m.Records[0].Type != audit.TypeEventRejected || m.Records[0].Error == "" {
			t.Errorf("%s: events %v records %+v", c.name, m.Events, m.Records)
		}
	}
}

// A stream with an authorization_header: deliveries without that bearer
// are refused before the signature is checked, and on record as auth.failed.
func TestStreamToken(t *testing.T) {
	p := newTransmitter(t)
	m := &eventstest.Broker{}
	r := newReceiver(t, p, m, "old-stream-token-0123456789", token)
	set := p.sign(claims(evRevoke, map[string]any{}, nil), "secevent+jwt", nil, "")
	for _, auth := range []string{"", "Bearer wrong-token-0123456789", token} {
		if code, body := post(r, set, setType, auth); code != http.StatusUnauthorized || body["err"] != "authentication_failed" {
			t.Errorf("auth %q: %d %v", auth, code, body)
		}
	}
	if len(m.Records) != 3 || m.Records[0].Type != audit.TypeAuthFailed || strings.Contains(m.Records[2].Error+string(m.Records[2].Detail), token) {
		t.Errorf("records %+v", m.Records)
	}
	if p.fetches.Load() != 0 {
		t.Error("keys fetched for an unauthenticated delivery")
	}
	if code, body := post(r, set, setType, "Bearer "+token); code != http.StatusAccepted {
		t.Fatalf("right token: %d %v", code, body)
	}
}

// A retransmitted SET (the transmitter did not see our 202) is accepted
// again, recorded as a duplicate, and published once; when the broker is
// down the answer is 503 so that the transmitter retries.
func TestRetransmissionAndBrokerDown(t *testing.T) {
	p := newTransmitter(t)
	m := &eventstest.Broker{}
	r := newReceiver(t, p, m)
	set := p.sign(claims(TypeAccountDisabled, map[string]any{}, nil), "secevent+jwt", nil, "")
	m.Fail = true
	if code, _ := post(r, set, setType, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("broker down: %d", code)
	}
	m.Fail = false
	for range 2 {
		if code, body := post(r, set, setType, ""); code != http.StatusAccepted {
			t.Fatalf("%d %v", code, body)
		}
	}
	if len(m.Events) != 1 || len(m.Records) != 1 || m.Records[0].Outcome != "duplicate" {
		t.Errorf("events %d, records %+v", len(m.Events), m.Records)
	}
}

// A transmitter that rotates its key: the SET with the new kid makes us
// fetch the keys again, once; an unknown kid right after does not.
func TestKeyRotation(t *testing.T) {
	p := newTransmitter(t)
	m := &eventstest.Broker{}
	now := time.Now()
	r, err := New(Config{Transmitters: []Transmitter{{Issuer: iss, JWKSURL: p.srv.URL}}, Audience: []string{aud},
		Mapping: DefaultMapping(), MaxBody: 64 << 10, PublishTimeout: time.Second, Publisher: m, Recorder: m,
		Client: p.srv.Client(), Now: func() time.Time { return now }, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := post(r, p.sign(claims(evRevoke, map[string]any{}, nil), "secevent+jwt", nil, ""), setType, ""); code != http.StatusAccepted {
		t.Fatal(code)
	}
	newKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p.rsaKey, p.kid = newKey, "tr-2"
	c := claims(evRevoke, map[string]any{}, func(c map[string]any) { c["jti"] = "jti-2" })
	// Within a minute of the last fetch the new kid is not fetched for...
	if code, body := post(r, p.sign(c, "secevent+jwt", nil, ""), setType, ""); code != http.StatusBadRequest || body["err"] != "invalid_key" {
		t.Fatalf("%d %v", code, body)
	}
	// ...after it, it is.
	now = now.Add(2 * time.Minute)
	if code, body := post(r, p.sign(c, "secevent+jwt", nil, ""), setType, ""); code != http.StatusAccepted {
		t.Fatalf("%d %v", code, body)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("%d key fetches, want 2", n)
	}
}

// A jwks_uri that fails or hangs is fetched at most once per minRefresh,
// one fetch at a time: a flood of SETs does not become a flood of fetches,
// nor a queue behind one slow fetch.
func TestKeyFetchesAreRateLimited(t *testing.T) {
	var fetches atomic.Int32
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		<-release
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer slow.Close()
	m := &eventstest.Broker{}
	r, err := New(Config{Transmitters: []Transmitter{{Issuer: iss, JWKSURL: slow.URL}}, Audience: []string{aud},
		Mapping: DefaultMapping(), MaxBody: 64 << 10, PublishTimeout: time.Second, Publisher: m, Recorder: m,
		Client: slow.Client(), Now: time.Now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := newTransmitter(t)
	set := p.sign(claims(evRevoke, map[string]any{}, nil), "secevent+jwt", nil, "")
	codes := make(chan int, 20)
	for range 20 {
		go func() { code, _ := post(r, set, setType, ""); codes <- code }()
	}
	waitFor(t, func() bool { return fetches.Load() >= 1 })
	close(release)
	for range 20 {
		if code := <-codes; code != http.StatusServiceUnavailable {
			t.Errorf("answer %d while the keys cannot be had, want 503 (the transmitter retries)", code)
		}
	}
	if code, _ := post(r, set, setType, ""); code != http.StatusServiceUnavailable {
		t.Errorf("after the failed fetch: %d", code)
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d fetches of a failing jwks_uri within a minute, want 1", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A SET older than the max age is refused (a replay past the dedup window
// would act again); a SET in JWS JSON serialization is refused (RFC 8417:
// compact only).
func TestOldAndNonCompactSETsAreRefused(t *testing.T) {
	p := newTransmitter(t)
	m := &eventstest.Broker{}
	r := newReceiver(t, p, m)
	old := p.sign(claims(evRevoke, map[string]any{}, func(c map[string]any) { c["iat"] = time.Now().Add(-400 * 24 * time.Hour).Unix() }), "secevent+jwt", nil, "")
	if code, body := post(r, old, setType, ""); code != http.StatusBadRequest || !strings.Contains(body["description"], "ago") {
		t.Errorf("a 400-day-old SET: %d %v", code, body)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.rsaKey}, (&jose.SignerOptions{}).WithType("secevent+jwt").WithHeader("kid", p.kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims(evRevoke, map[string]any{}, nil))
	obj, _ := s.Sign(payload)
	if code, body := post(r, obj.FullSerialize(), setType, ""); code != http.StatusBadRequest || !strings.Contains(body["description"], "compact") {
		t.Errorf("a SET in JSON serialization: %d %v", code, body)
	}
	if len(m.Events) != 0 {
		t.Errorf("events from refused SETs: %v", m.Events)
	}
}

type memConfirm struct {
	waiting map[string]*revoke.Awaiting
}

func (m *memConfirm) Expect(context.Context, revoke.Awaiting) error { return nil }
func (m *memConfirm) Take(_ context.Context, target string, s events.Subject) (*revoke.Awaiting, error) {
	a := m.waiting[target+"/"+s.Email]
	delete(m.waiting, target+"/"+s.Email)
	return a, nil
}

// A target's authorization server confirming revocations: its
// session-revoked SET becomes revocation.confirmed for the revocation
// awaiting it, never a lifecycle event; one after the window, one matching
// nothing, and other event types are on record as ignored.
func TestConfirmationSETs(t *testing.T) {
	p := newTransmitter(t)
	m := &eventstest.Broker{}
	now := time.Now()
	conf := &memConfirm{waiting: map[string]*revoke.Awaiting{
		"as1/ana@example.com": {EventID: "okta:1", Target: "as1", Subject: events.Subject{Email: "ana@example.com"}, Accepted: now.Add(-time.Minute), Deadline: now.Add(time.Hour)},
		"as1/bo@example.com":  {EventID: "okta:2", Target: "as1", Subject: events.Subject{Email: "bo@example.com"}, Accepted: now.Add(-2 * time.Hour), Deadline: now.Add(-time.Hour)},
	}}
	r, err := New(Config{Transmitters: []Transmitter{{Issuer: iss, JWKSURL: p.srv.URL, Confirms: "as1"}}, Audience: []string{aud},
		Mapping: DefaultMapping(), MaxBody: 64 << 10, PublishTimeout: time.Second, Publisher: m, Recorder: m, Confirmations: conf,
		Client: p.srv.Client(), Now: time.Now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct{ event, email string }{
		{TypeSessionRevoked, "ana@example.com"}, {TypeSessionRevoked, "bo@example.com"}, {TypeSessionRevoked, "cy@example.com"}, {TypeAccountDisabled, "ana@example.com"},
	} {
		set := p.sign(claims(c.event, map[string]any{}, func(cl map[string]any) {
			cl["jti"] = fmt.Sprint("c-", i)
			cl["sub_id"] = map[string]any{"format": "email", "email": c.email}
		}), "secevent+jwt", nil, "")
		if code, body := post(r, set, setType, ""); code != http.StatusAccepted {
			t.Fatalf("%s for %s: %d %v", c.event, c.email, code, body)
		}
	}
	if len(m.Events) != 0 {
		t.Errorf("confirmations became lifecycle events: %v", m.Events)
	}
	var got []string
	for _, rec := range m.Records {
		got = append(got, string(rec.Type)+":"+rec.EventID)
	}
	want := "revocation.confirmed:okta:1 event.ignored:okta:2 event.ignored: event.ignored:"
	if strings.Join(got, " ") != want || m.Records[0].Target != "as1" {
		t.Errorf("records %v, want %s", got, want)
	}
}
