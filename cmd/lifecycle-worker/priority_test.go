package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Only authenticated intake requests take priority over the pipeline: a
// stranger's slow request holds nothing back.
func TestIntakeFirstCountsOnlyAuthenticatedRequests(t *testing.T) {
	p := newIntakeFirst(0, time.Second, 0)
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

// busy puts an authenticated intake request in flight until done is called.
func busy(p *intakeFirst) (done func()) {
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

// yields starts n pipeline yields and returns a channel that receives once
// per yield that returned, after all n are either waiting or gone.
func yields(t *testing.T, p *intakeFirst, n int) <-chan struct{} {
	t.Helper()
	passed := make(chan struct{}, n)
	for range n {
		go func() { p.yield(); passed <- struct{}{} }()
	}
	for {
		p.mu.Lock()
		settled := len(p.waiting) + len(passed)
		p.mu.Unlock()
		if settled >= n {
			return passed
		}
		runtime.Gosched()
	}
}

// waiting is how many yields wait.
func waiting(p *intakeFirst) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiting)
}

// While intake is in flight the pipeline's starts wait, and are let go one
// per share (the first at once); once intake is quiet they all go, and new
// starts do not wait.
func TestIntakeFirstSharesThenLetsGo(t *testing.T) {
	p := newIntakeFirst(0, time.Hour, 0)
	p.yield() // intake quiet: returns at once
	done := busy(p)
	passed := yields(t, p, 3)
	<-passed // the share's first start
	if n := waiting(p); n != 2 {
		t.Fatalf("%d starts wait while intake is in flight, want 2 (one share of an hour let one go)", n)
	}
	done()
	<-passed
	<-passed
	if n := waiting(p); n != 0 {
		t.Fatalf("%d starts still wait once intake is quiet", n)
	}
	p.yield() // quiet: returns at once
}

// During the first hold of a busy spell nothing starts.
func TestIntakeFirstHoldsFirst(t *testing.T) {
	p := newIntakeFirst(time.Hour, 0, 0)
	done := busy(p)
	passed := yields(t, p, 2)
	if n := waiting(p); n != 2 {
		t.Fatalf("%d starts wait during the hold, want 2", n)
	}
	done()
	<-passed
	<-passed
}

// Intake counts as quiet only after quiet without a request in flight: a
// hold does not end between two requests of one wave.
func TestIntakeFirstWaitsForQuiet(t *testing.T) {
	p := newIntakeFirst(0, time.Hour, time.Hour)
	done := busy(p)
	passed := yields(t, p, 2)
	<-passed // the share's first start
	done()   // in flight touches zero: not yet quiet
	if n := waiting(p); n != 1 {
		t.Fatalf("%d starts wait right after the last answer, want 1", n)
	}
	p.mu.Lock()
	quiet := p.quietNow
	p.mu.Unlock()
	if quiet {
		t.Fatal("intake counts as quiet the moment its last request was answered")
	}

	// The quiet timer of an earlier lull does not end a hold that a later
	// request started.
	p = newIntakeFirst(0, time.Hour, time.Nanosecond)
	done = busy(p)
	done()
	for { // the lull's timer fires after a nanosecond
		p.mu.Lock()
		quiet := p.quietNow
		p.mu.Unlock()
		if quiet {
			break
		}
		runtime.Gosched()
	}
	p.mu.Lock()
	p.quiet = time.Hour // the next lull's timer will not fire during the test
	p.mu.Unlock()
	done = busy(p)
	defer done()
	passed = yields(t, p, 2)
	<-passed
	if n := waiting(p); n != 1 {
		t.Fatalf("%d starts wait while a request is in flight, want 1", n)
	}
}

// Once intake is quiet the waiting go step at a time, not in a herd.
func TestIntakeFirstLetsGoAFewAtATime(t *testing.T) {
	p := newIntakeFirst(0, time.Hour, 0)
	p.step, p.pace = 2, time.Hour
	done := busy(p)
	passed := yields(t, p, 6)
	<-passed // the share's first start
	if n := waiting(p); n != 5 {
		t.Fatalf("%d wait, want 5", n)
	}
	done() // quiet: a step of 2 goes, the next only after a pace of an hour
	<-passed
	<-passed
	if n := waiting(p); n != 3 {
		t.Fatalf("%d wait after the first step, want 3", n)
	}
	select {
	case <-passed:
		t.Fatal("more than a step went at once")
	default:
	}
}

// An authenticated request whose body is still on its way holds nothing:
// a slow sender (or a holder of a secret trickling bytes) must not keep the
// pipeline held for the whole read timeout. It counts once its body is read.
func TestIntakeFirstWaitsForTheBody(t *testing.T) {
	p := newIntakeFirst(0, time.Hour, 0)
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
