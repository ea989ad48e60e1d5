package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Only authenticated intake requests take priority over the pipeline: a
// stranger's slow request holds nothing back.
func TestIntakeFirstCountsOnlyAuthenticatedRequests(t *testing.T) {
	p := newIntakeFirst()
	for _, auth := range []bool{false, true} {
		inside := make(chan int, 1)
		h := p.wrap(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			if auth {
				events.Authenticated(r.Context())
				events.Authenticated(r.Context()) // twice counts once
			}
			inside <- p.inFlight()
		}))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/hooks/okta", nil))
		want := 0
		if auth {
			want = 1
		}
		if got := <-inside; got != want {
			t.Errorf("authenticated=%v: %d in flight while handled, want %d", auth, got, want)
		}
		if p.inFlight() != 0 {
			t.Errorf("authenticated=%v: %d still in flight after the answer", auth, p.inFlight())
		}
	}
}
