package oktahook

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/eventstest"
)

const secret = "a-hook-secret-0123456789"

func newHandler(t testing.TB, m *eventstest.Broker) *Handler {
	t.Helper()
	h, err := New(Config{Header: "Authorization", Secrets: []string{"old-secret-0123456789", secret}, MaxBody: 1 << 20,
		Mapping: events.DefaultOktaMapping(), Issuer: "https://acme.okta.com", PublishTimeout: time.Second,
		Publisher: m, Recorder: m, Now: time.Now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func logEventJSON(typ, targets, outcome, debug string) string {
	return fmt.Sprintf(`{"uuid":"u-%s","published":"2026-11-20T10:00:00Z","eventType":%q,
		"actor":{"id":"00uactor","type":"User","alternateId":"actor@example.com"},
		"outcome":{"result":%q},"target":[%s],"debugContext":{"debugData":{%s}}}`, typ, typ, outcome, targets, debug)
}

const userTarget = `{"id":"00ujane","type":"User","alternateId":"jane@example.com","displayName":"Jane"}`

func TestMapping(t *testing.T) {
	cases := []struct {
		name, typ, targets, outcome, debug string
		kind                               events.Kind // "" means ignored
		scope                              string
	}{
		{"deactivate", "user.lifecycle.deactivate", userTarget, "SUCCESS", "", events.KindDeprovisioned, ""},
		{"delete", "user.lifecycle.delete.initiated", userTarget, "SUCCESS", "", events.KindDeprovisioned, ""},
		{"suspend", "user.lifecycle.suspend", userTarget, "SUCCESS", "", events.KindSuspended, ""},
		{"lock", "user.account.lock", userTarget, "SUCCESS", "", events.KindSuspended, ""},
		{"session clear", "user.session.clear", userTarget, "SUCCESS", "", events.KindSessionsRevoked, ""},
		{"password reset", "user.account.reset_password", userTarget, "SUCCESS", "", events.KindCredentialsChanged, ""},
		{"reactivate", "user.lifecycle.reactivate", userTarget, "SUCCESS", "", events.KindReactivated, ""},
		{"app removal", "application.user_membership.remove", userTarget + `,{"id":"0oaapp","type":"AppInstance","displayName":"Linear"}`, "SUCCESS", "", events.KindAccessRemoved, "apps:0oaapp/Linear"},
		{"group removal", "group.user_membership.remove", userTarget + `,{"id":"00ggrp","type":"UserGroup","displayName":"MCP users"}`, "SUCCESS", "", events.KindAccessRemoved, "groups:00ggrp/MCP users"},
		{"removal without app", "application.user_membership.remove", userTarget, "SUCCESS", "", "", ""},
		{"risk high", "user.risk.change", userTarget, "SUCCESS", `"risk":"{previousLevel=LOW, level=HIGH}"`, events.KindRiskElevated, ""},
		{"risk low", "user.risk.change", userTarget, "SUCCESS", `"risk":"{level=LOW}"`, "", ""},
		{"risk not a string", "user.risk.change", userTarget, "SUCCESS", `"risk":{"level":"HIGH"}`, "", ""},
		{"risk with the rest of debugData", "user.risk.change", userTarget, "SUCCESS", `"requestUri":"/api/v1/users","behaviors":{"New IP":"POSITIVE"},"risk":"{level=HIGH, detectionName=Session Influenced User Risk}"`, events.KindRiskElevated, ""},
		{"failed deactivate", "user.lifecycle.deactivate", userTarget, "FAILURE", "", "", ""},
		{"unmapped", "user.session.start", userTarget, "SUCCESS", "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := &eventstest.Broker{}
			h := newHandler(t, m)
			body := `{"eventType":"com.okta.event_hook","eventId":"d1","data":{"events":[` + logEventJSON(c.typ, c.targets, c.outcome, c.debug) + `]}}`
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/hooks/okta", strings.NewReader(body))
			req.Header.Set("Authorization", secret)
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if c.kind == "" {
				if len(m.Events) != 0 || len(m.Records) != 1 || m.Records[0].Type != audit.TypeEventIgnored {
					t.Fatalf("want ignored with a record, got events %v records %+v", m.Events, m.Records)
				}
				var d map[string]any
				_ = json.Unmarshal(m.Records[0].Detail, &d)
				if d["reason"] == "" || d["reason"] == nil {
					t.Errorf("ignored record without a reason: %s", m.Records[0].Detail)
				}
				return
			}
			if len(m.Events) != 1 {
				t.Fatalf("got %d events", len(m.Events))
			}
			ev := m.Events[0]
			want := events.Subject{Issuer: "https://acme.okta.com", ID: "00ujane", Login: "jane@example.com", Email: "jane@example.com"}
			if ev.Kind != c.kind || ev.Subject != want || ev.ID != "okta:u-"+c.typ || ev.Cause != c.typ {
				t.Errorf("event %+v", ev)
			}
			var scope string
			for _, a := range ev.Scope.Apps {
				scope += "apps:" + a.ID + "/" + a.Name
			}
			for _, g := range ev.Scope.Groups {
				scope += "groups:" + g.ID + "/" + g.Name
			}
			if scope != c.scope {
				t.Errorf("scope %q, want %q", scope, c.scope)
			}
		})
	}
}

func TestSecretsAndRotation(t *testing.T) {
	m := &eventstest.Broker{}
	h := newHandler(t, m)
	body := `{"data":{"events":[` + logEventJSON("user.lifecycle.deactivate", userTarget, "SUCCESS", "") + `]}}`
	for _, c := range []struct {
		header string
		want   int
	}{
		{secret, 200},
		{"old-secret-0123456789", 200}, // the secret being rotated out still works
		{"", 401},
		{secret + "x", 401},
		{strings.ToUpper(secret), 401},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/hooks/okta", strings.NewReader(body))
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("header %q: status %d, want %d", c.header, rec.Code, c.want)
		}
	}
}

func TestPublishFailureIs503(t *testing.T) {
	m := &eventstest.Broker{Fail: true}
	h := newHandler(t, m)
	body := `{"data":{"events":[` + logEventJSON("user.lifecycle.deactivate", userTarget, "SUCCESS", "") + `]}}`
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/hooks/okta", strings.NewReader(body))
	req.Header.Set("Authorization", secret)
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503 so that Okta retries", rec.Code)
	}
}

func FuzzParseDelivery(f *testing.F) {
	f.Add([]byte(`{"data":{"events":[{"uuid":"a","eventType":"user.lifecycle.deactivate"}]}}`))
	f.Add([]byte(`[{"uuid":"a","eventType":"x"}]`))
	f.Add([]byte(`{"uuid":"a","eventType":"user.session.clear","target":[{"type":"User","id":"1"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m := &eventstest.Broker{}
		h := newHandler(t, m)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/hooks/okta", strings.NewReader(string(body)))
		req.Header.Set("Authorization", secret)
		h.ServeHTTP(rec, req)
		if rec.Code != 200 && rec.Code != 400 {
			t.Fatalf("status %d", rec.Code)
		}
		if len(m.Records) == 0 && len(m.Events) == 0 {
			t.Fatal("input left neither an event nor an audit record")
		}
		for _, ev := range m.Events {
			if err := ev.Validate(); err != nil {
				t.Fatalf("published invalid event: %v", err)
			}
		}
	})
}

// failingBody is a body whose sender stopped half way (a read deadline, a
// cut connection).
type failingBody struct{ sent bool }

func (b *failingBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, `{"data":{"events":[`), nil
	}
	return 0, fmt.Errorf("i/o timeout")
}

// An authenticated delivery whose body did not arrive is answered 503, so
// that Okta retries (it never retries a 4xx); a body that is not UTF-8 is
// refused whole: decoding would make two different uuids one event ID.
func TestBodyNotReceivedAndNotUTF8(t *testing.T) {
	m := &eventstest.Broker{}
	h := newHandler(t, m)
	req := httptest.NewRequest(http.MethodPost, "/hooks/okta", &failingBody{})
	req.Header.Set("Authorization", secret)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("a body cut short: %d, want 503", rec.Code)
	}
	body := `{"eventType":"com.okta.event_hook","data":{"events":[` +
		logEventJSON("user.lifecycle.deactivate", `[{"id":"00u1","type":"User","alternateId":"a@example.com"}]`, "SUCCESS", "") + `]}}`
	body = strings.Replace(body, `"uuid":"`, "\"uuid\":\"\xff", 1)
	req = httptest.NewRequest(http.MethodPost, "/hooks/okta", strings.NewReader(body))
	req.Header.Set("Authorization", secret)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || len(m.Events) != 0 {
		t.Errorf("a body with invalid UTF-8: %d, %d events", rec.Code, len(m.Events))
	}
}

func TestBodiesThatAreNotDeliveries(t *testing.T) {
	deactivate := logEventJSON("user.lifecycle.deactivate", userTarget, "SUCCESS", "")
	cases := []struct{ name, body, reason string }{
		{"empty", ``, "body is not JSON"},
		{"not JSON", `{"eventType":"com.okta.event_hook","data":`, "body is not JSON"},
		{"trailing text", `{"data":{"events":[]}} and more`, "body is not JSON"},
		{"a list with something after it", `[` + deactivate + `] x`, "body is not JSON"},
		{"events not a list", `{"data":{"events":5}}`, "body is not an event hook delivery: "},
		{"a list that is not", `[{"uuid":1}`, "body is not JSON"},
	}
	for _, c := range cases {
		m := &eventstest.Broker{}
		h := newHandler(t, m)
		req := httptest.NewRequest(http.MethodPost, "/hooks/okta", strings.NewReader(c.body))
		req.Header.Set("Authorization", secret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || len(m.Events) != 0 || !strings.HasPrefix(rec.Body.String(), c.reason) {
			t.Errorf("%s: %d %q with %d events, want 400 %q", c.name, rec.Code, rec.Body.String(), len(m.Events), c.reason)
		}
		if len(m.Records) != 1 || m.Records[0].Type != audit.TypeEventRejected || !strings.HasPrefix(m.Records[0].Error, c.reason) {
			t.Errorf("%s: records %+v", c.name, m.Records)
		}
	}
}
