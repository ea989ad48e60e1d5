package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Only authenticated intake requests take priority over the pipeline: a
// stranger's slow request holds nothing back.
func TestIntakeFirstCountsOnlyAuthenticatedRequests(t *testing.T) {
	p := newIntakeFirst(time.Second, time.Second)
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

// While intake is in flight the pipeline waits, until intake is idle or its
// hold ends; a hold that ends opens a free share in which nothing waits.
func TestIntakeFirstHoldsThenOpens(t *testing.T) {
	busy := func(p *intakeFirst) (done func()) {
		entered, leave := make(chan struct{}), make(chan struct{})
		h := p.wrap(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			events.Authenticated(r.Context())
			close(entered)
			<-leave
		}))
		finished := make(chan struct{})
		go func() {
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/hooks/okta", nil))
			close(finished)
		}()
		<-entered
		return func() { close(leave); <-finished }
	}

	// A long hold: the pipeline waits for the intake request to end.
	p := newIntakeFirst(time.Hour, time.Hour)
	done := busy(p)
	yielded := make(chan struct{})
	go func() { p.yield(); close(yielded) }()
	select {
	case <-yielded:
		t.Fatal("the pipeline went on while an intake request was in flight")
	default:
	}
	done()
	<-yielded

	// A hold that ends at once opens the free share: yields return while
	// intake is still busy.
	p = newIntakeFirst(time.Nanosecond, time.Hour)
	done = busy(p)
	p.yield() // the hold ends: the share opens
	p.mu.Lock()
	open := time.Now().Before(p.openUntil)
	p.mu.Unlock()
	if !open {
		t.Fatal("an ended hold did not open the pipeline's share")
	}
	p.yield() // returns within the share
	done()
	p.yield() // idle: returns
}

// An authenticated request whose body is still on its way holds nothing:
// a slow sender (or a holder of a secret trickling bytes) must not keep the
// pipeline held for the whole read timeout. It counts once its body is read.
func TestIntakeFirstWaitsForTheBody(t *testing.T) {
	p := newIntakeFirst(time.Hour, time.Hour)
	body, sender := io.Pipe()
	authenticated, read := make(chan int), make(chan int)
	h := p.wrap(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		events.Authenticated(r.Context())
		authenticated <- p.inFlight()
		_, _ = io.ReadAll(r.Body)
		read <- p.inFlight()
	}))
	go h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/hooks/okta", body))
	if n := <-authenticated; n != 0 {
		t.Fatalf("%d in flight while the body is still arriving, want 0", n)
	}
	_, _ = sender.Write([]byte(`{"data":`))
	_ = sender.Close()
	if n := <-read; n != 1 {
		t.Fatalf("%d in flight once the body is read, want 1", n)
	}
}
