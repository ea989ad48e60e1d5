package oktahook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/eventstest"
)

// Any delivery body, from an authenticated sender: the handler never
// panics, answers 200 (all durable) or a 4xx naming the problem, never a
// 5xx with the broker up, and every event it publishes is valid, has an
// ID that is valid UTF-8, and encodes as JSON that decodes to the same raw
// event (Encode writes the raw as it came, without checking it again).
func FuzzHookDelivery(f *testing.F) {
	files, _ := filepath.Glob("../../../examples/okta-hooks/*.json")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"data":{"events":[{"uuid":"\u0000","eventType":"user.lifecycle.deactivate","target":[{"type":"User"}]}]}}`))
	f.Add([]byte(`{"data":{"events":null}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m := &eventstest.Broker{}
		h := newHandler(t, m)
		req := httptest.NewRequest(http.MethodPost, "/hooks/okta", strings.NewReader(string(body)))
		req.Header.Set("Authorization", secret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("answered %d: %s", rec.Code, rec.Body)
		}
		for _, ev := range m.Events {
			if err := ev.Validate(); err != nil || !utf8.ValidString(ev.ID) {
				t.Fatalf("published an invalid event %+v: %v", ev, err)
			}
			b, err := ev.Encode()
			var back events.Event
			if err != nil || json.Unmarshal(b, &back) != nil || back.ID != ev.ID || !bytes.Equal(back.Raw, ev.Raw) {
				t.Fatalf("event %s encoded as %q (%v)", ev.ID, b, err)
			}
		}
	})
}
