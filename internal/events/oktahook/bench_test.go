package oktahook

import (
	"fmt"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/eventstest"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkDelivery is the handler's own cost for a 50-event delivery, with
// an in-memory broker (go test -bench Delivery ./internal/events/oktahook).
func BenchmarkDelivery(b *testing.B) {
	var evs []string
	for i := range 50 {
		evs = append(evs, fmt.Sprintf(`{"uuid":"b-%d","published":"2026-11-26T09:00:00.000Z","eventType":"user.lifecycle.deactivate","version":"0","severity":"INFO","displayMessage":"Deactivate Okta User","actor":{"id":"00uadmin","type":"User","alternateId":"admin@example.com","displayName":"Admin"},"outcome":{"result":"SUCCESS","reason":null},"target":[{"id":"00u%d","type":"User","alternateId":"user%d@example.com","displayName":"User","detailEntry":null}],"transaction":{"type":"WEB","id":"bench"}}`, i, i, i))
	}
	body := `{"eventType":"com.okta.event_hook","eventId":"d","data":{"events":[` + strings.Join(evs, ",") + `]}}`
	b.ReportAllocs()
	for b.Loop() {
		m := &eventstest.Broker{}
		h := newHandler(b, m)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/hooks/okta", strings.NewReader(body))
		req.Header.Set("Authorization", secret)
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
