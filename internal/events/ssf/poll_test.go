package ssf

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/eventstest"
)

// pollTransmitter is an RFC 8936 poll endpoint: it offers every SET not yet
// acknowledged or reported in setErrs, and checks each request's form.
type pollTransmitter struct {
	t     *testing.T
	mu    sync.Mutex
	sets  map[string]string // jti -> SET, still offered
	acked []string
	errs  map[string]map[string]string
	reqs  int
	bad   []string
}

func (p *pollTransmitter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs++
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Authorization") != "Bearer poll-token" {
		p.bad = append(p.bad, r.Method+" "+r.Header.Get("Content-Type")+" "+r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil || req["maxEvents"] == nil || req["returnImmediately"] == nil {
		p.bad = append(p.bad, "body "+string(body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var ack []string
	_ = json.Unmarshal(req["ack"], &ack)
	var errs map[string]map[string]string
	_ = json.Unmarshal(req["setErrs"], &errs)
	var maxEvents int
	_ = json.Unmarshal(req["maxEvents"], &maxEvents)
	for _, jti := range ack {
		p.acked = append(p.acked, jti)
		delete(p.sets, jti)
	}
	for jti, e := range errs {
		p.errs[jti] = e
		delete(p.sets, jti)
	}
	out := map[string]string{}
	for jti, set := range p.sets {
		if len(out) < maxEvents {
			out[jti] = set
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"sets": out, "moreAvailable": len(p.sets) > len(out)})
}

// Polled SETs are handled like pushed ones: the good ones become events and
// are acknowledged in the next request, a bad one is reported in setErrs
// and on record, and while the broker is down nothing is acknowledged, so
// the transmitter offers the SET again.
func TestPollDelivery(t *testing.T) {
	p := newTransmitter(t)
	tr := &pollTransmitter{t: t, sets: map[string]string{}, errs: map[string]map[string]string{}}
	tr.sets["jti-1"] = p.sign(claims(TypeAccountDisabled, map[string]any{}, nil), "secevent+jwt", nil, "")
	tr.sets["jti-2"] = p.sign(claims(evRevoke, map[string]any{}, func(c map[string]any) {
		c["jti"] = "jti-2"
		c["sub_id"] = map[string]any{"format": "email", "email": "bo@example.com"}
	}), "secevent+jwt", nil, "")
	tr.sets["jti-3"] = p.sign(claims(evRevoke, map[string]any{}, func(c map[string]any) { c["jti"], c["aud"] = "jti-3", "https://elsewhere.example" }), "secevent+jwt", nil, "")
	srv := httptest.NewServer(tr)
	defer srv.Close()

	m := &eventstest.Broker{Fail: true}
	r := newReceiver(t, p, m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- r.RunPoll(ctx, Poll{Issuer: iss, URL: srv.URL, Token: "poll-token", Interval: 10 * time.Millisecond, MaxEvents: 2})
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Broker down: polls go on, nothing is acknowledged.
	waitFor("a few polls", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.reqs >= 3 })
	tr.mu.Lock()
	if len(tr.acked) != 0 {
		t.Errorf("acknowledged %v while nothing was durable", tr.acked)
	}
	tr.mu.Unlock()
	m.SetFail(false)
	waitFor("every SET settled", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return len(tr.sets) == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	slices.Sort(tr.acked)
	if !slices.Equal(tr.acked, []string{"jti-1", "jti-2"}) || tr.errs["jti-3"]["err"] != "invalid_audience" || len(tr.bad) != 0 {
		t.Errorf("acked %v, setErrs %v, malformed requests %v", tr.acked, tr.errs, tr.bad)
	}
	if len(m.Events) != 2 {
		t.Errorf("%d events", len(m.Events))
	}
	var rejected int
	for _, rec := range m.Records {
		if rec.Type == audit.TypeEventRejected && string(rec.Detail) != "" {
			rejected++
		}
	}
	if rejected != 1 {
		t.Errorf("records %+v", m.Records)
	}
}
