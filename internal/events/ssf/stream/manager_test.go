package stream_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/ssf/ssftest"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/ssf/stream"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/outauth"
)

// memState is the shared state in memory, with revisions like NATS KV.
type memState struct {
	mu   sync.Mutex
	vals map[string][]byte
	revs map[string]uint64
	rev  uint64
}

func (m *memState) Get(_ context.Context, k string) ([]byte, uint64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[k]
	return v, m.revs[k], ok, nil
}

func (m *memState) Create(_ context.Context, k string, v []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vals[k]; ok {
		return 0, errors.New("exists")
	}
	m.rev++
	m.vals[k], m.revs[k] = v, m.rev
	return m.rev, nil
}

func (m *memState) Update(_ context.Context, k string, v []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.revs[k] != rev {
		return 0, errors.New("wrong revision")
	}
	m.rev++
	m.vals[k], m.revs[k] = v, m.rev
	return m.rev, nil
}

func (m *memState) Put(_ context.Context, k string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	m.vals[k], m.revs[k] = v, m.rev
	return nil
}

type recs struct {
	mu sync.Mutex
	r  []audit.Record
}

func (r *recs) Record(_ context.Context, rs ...audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.r = append(r.r, rs...)
	return nil
}

func (r *recs) outcomes() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var o []string
	for _, x := range r.r {
		o = append(o, x.Outcome)
	}
	return strings.Join(o, ",")
}

func manager(t *testing.T, tr *ssftest.Transmitter, now *time.Time) (*stream.Manager, *recs) {
	t.Helper()
	rec := &recs{}
	g := &stream.Registry{State: &memState{vals: map[string][]byte{}, revs: map[string]uint64{}}, Recorder: rec,
		Now: func() time.Time { return *now }, Log: slog.New(slog.DiscardHandler)}
	c := &stream.Client{Issuer: tr.Issuer, HTTP: &http.Client{Timeout: 5 * time.Second}, Tokens: outauth.Static("mgmt-token-0123456789"),
		CheckURL: func(u string) error { return config.CheckEndpoint(u, true) }}
	return &stream.Manager{Client: c, Registry: g, Endpoint: "https://lw.example/ssf/events",
		Events: []string{"https://schemas.openid.net/secevent/caep/event-type/session-revoked"}, RotateEvery: 24 * time.Hour,
		VerifyEvery: 24 * time.Hour, VerifyWithin: 5 * time.Minute}, rec
}

// The delivery token rotates: the stream is updated with the new one, and
// the old one is still taken until the next rotation; a verification nobody
// answers is on record as overdue; and reconciling again changes nothing.
func TestTokenRotationAndOverdueVerification(t *testing.T) {
	tr := ssftest.New(t, ssftest.Options{ManagementToken: "mgmt-token-0123456789", Audience: "https://lw.example",
		Route: func(string) string { return "http://127.0.0.1:1/unreachable" }})
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	m, rec := manager(t, tr, &now)
	ctx := context.Background()
	r1, err := m.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := tr.Stream().Authorization
	if first != "Bearer "+r1.Token || r1.StreamID != tr.Stream().ID {
		t.Fatalf("stream %+v, record %+v", tr.Stream(), r1)
	}
	now = now.Add(10 * time.Minute) // the verification never came
	if _, err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	calls := len(tr.Calls())
	if _, err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range tr.Calls()[calls:] {
		if !strings.HasPrefix(c, "GET") {
			t.Errorf("a reconcile with nothing to change sent %s", c)
		}
	}
	now = now.Add(25 * time.Hour)
	r2, err := m.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Stream().Authorization == first || tr.Stream().Authorization != "Bearer "+r2.Token {
		t.Errorf("the token did not rotate at the transmitter: %s", tr.Stream().Authorization)
	}
	toks := m.Registry.Tokens(ctx, tr.Issuer)
	if len(toks) != 2 || "Bearer "+string(toks[1]) != first {
		t.Errorf("tokens taken after a rotation: %d (the previous one must still be)", len(toks))
	}
	if got := rec.outcomes(); got != "created,status_enabled,verification_overdue,updated" {
		t.Errorf("records %s", got)
	}
	if p := tr.Problems(); len(p) > 0 {
		t.Errorf("wrong requests: %v", p)
	}
}

// A transmitter that refuses to create the stream, or answers garbage,
// gives a clear error; nothing is recorded as done.
func TestTransmitterRefusals(t *testing.T) {
	tr := ssftest.New(t, ssftest.Options{ManagementToken: "mgmt-token-0123456789", RefuseCreate: http.StatusForbidden})
	now := time.Now()
	m, rec := manager(t, tr, &now)
	if _, err := m.Reconcile(context.Background()); err == nil || !strings.Contains(err.Error(), "create stream: HTTP 403") {
		t.Errorf("refused creation: %v", err)
	}
	m.Client.Tokens = outauth.Static("wrong-token-0123456789")
	if _, err := m.Reconcile(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong management token: %v", err)
	}
	if rec.outcomes() != "" {
		t.Errorf("records after refusals: %s", rec.outcomes())
	}
	bad := &stream.Client{Issuer: "https://tr.example", HTTP: &http.Client{Transport: garbage{}}, CheckURL: func(string) error { return nil }}
	if _, err := bad.Discover(context.Background()); err == nil {
		t.Error("garbage metadata accepted")
	}
}

type garbage struct{}

func (garbage) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

// A transmitter that sends events only for added subjects gets the people
// we know, once each; knowing none is said on the trail, once.
func TestSubjectsWhenTheDefaultIsNone(t *testing.T) {
	tr := ssftest.New(t, ssftest.Options{ManagementToken: "mgmt-token-0123456789", DefaultSubjects: "NONE",
		Route: func(string) string { return "http://127.0.0.1:1/unreachable" }})
	now := time.Now()
	m, rec := manager(t, tr, &now)
	if _, err := m.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.outcomes(); strings.Count(got, "subjects_none") != 1 {
		t.Errorf("records %s: want one subjects_none", got)
	}
	m.Subjects = func(context.Context) ([]map[string]any, error) {
		return []map[string]any{{"format": "email", "email": "a@x.example"}, {"format": "email", "email": "b@x.example"}}, nil
	}
	for range 2 {
		if _, err := m.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(tr.Stream().Subjects); n != 2 {
		t.Errorf("%d subjects added, want 2 (once each)", n)
	}
	if p := tr.Problems(); len(p) > 0 {
		t.Errorf("wrong requests: %v", p)
	}
}
