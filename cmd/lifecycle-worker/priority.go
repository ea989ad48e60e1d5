package main

import (
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// intakeFirst gives IdP requests priority over the pipeline. An IdP waits
// for our answer under a deadline (Okta: 3 s, then one retry), while a
// revocation that starts a few milliseconds later loses nothing; so while
// intake requests are in flight, pipeline work waits before it starts. The
// wait is a duty cycle, not a per-start delay: held for at most hold, then
// free for open, so that a steady stream of hooks slows revocations by a
// bounded share and never starves them (docs/decisions/0005).
type intakeFirst struct {
	hold, open time.Duration

	mu        sync.Mutex
	active    int
	idle      chan struct{} // closed while no intake request is in flight
	heldSince time.Time     // when the current hold began (zero: none)
	openUntil time.Time     // the pipeline runs freely until then
}

func newIntakeFirst(hold, open time.Duration) *intakeFirst {
	idle := make(chan struct{})
	close(idle)
	return &intakeFirst{hold: hold, open: open, idle: idle}
}

// wrap marks requests to h as intake from the moment they are both
// authenticated (events.Authenticated) and read whole until they are
// answered. A stranger's request, however slow, never holds the pipeline
// back; nor does an IdP's body still on its way (a slow sender, or a
// holder of a secret trickling bytes, would otherwise hold it for the whole
// read timeout): the hold is for the work of answering, not the wait.
func (p *intakeFirst) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var mu sync.Mutex
		authenticated, read, marked, answered := false, r.Body == nil || r.Body == http.NoBody, false, false
		mark := func() { // under mu
			if !authenticated || !read || marked || answered {
				return
			}
			marked = true
			p.mu.Lock()
			if p.active == 0 {
				p.idle = make(chan struct{})
			}
			p.active++
			p.mu.Unlock()
		}
		ctx := events.WithOnAuthenticated(r.Context(), func() {
			mu.Lock()
			authenticated = true
			mark()
			mu.Unlock()
		})
		if !read {
			r.Body = &readWhole{ReadCloser: r.Body, done: func() {
				mu.Lock()
				read = true
				mark()
				mu.Unlock()
			}}
		}
		defer func() {
			mu.Lock()
			answered = true // no mark after the answer
			wasMarked := marked
			mu.Unlock()
			if !wasMarked {
				return
			}
			p.mu.Lock()
			p.active--
			if p.active == 0 {
				close(p.idle)
				p.heldSince = time.Time{}
			}
			p.mu.Unlock()
		}()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// readWhole calls done once its reader has reached its end.
type readWhole struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *readWhole) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.done)
	}
	return n, err
}

// inFlight is the number of authenticated intake requests in flight.
func (p *intakeFirst) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active
}

// yield returns at once while no intake request is in flight or the
// pipeline's free share runs; otherwise it waits until intake is idle or
// the current hold ends, which starts a free share.
func (p *intakeFirst) yield() {
	p.mu.Lock()
	now := time.Now()
	if p.active == 0 || now.Before(p.openUntil) {
		p.mu.Unlock()
		return
	}
	if p.heldSince.IsZero() {
		p.heldSince = now
	}
	idle, deadline := p.idle, p.heldSince.Add(p.hold)
	p.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
		p.mu.Lock()
		if p.heldSince.Equal(deadline.Add(-p.hold)) {
			p.heldSince, p.openUntil = time.Time{}, deadline.Add(p.open)
		}
		p.mu.Unlock()
	}
}
