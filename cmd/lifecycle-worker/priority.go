package main

import (
	"net/http"
	"sync"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// intakeFirst gives IdP requests priority over the pipeline. An IdP waits
// for our answer under a deadline (Okta: 3 s, then one retry), while a
// revocation that starts a few milliseconds later loses nothing; so while
// intake requests are in flight, pipeline handlers wait — briefly and
// boundedly, so that a steady stream of hooks cannot starve revocations.
type intakeFirst struct {
	mu     sync.Mutex
	active int
	idle   chan struct{} // closed while no intake request is in flight
}

func newIntakeFirst() *intakeFirst {
	idle := make(chan struct{})
	close(idle)
	return &intakeFirst{idle: idle}
}

// wrap marks requests to h as intake from the moment h says they are
// authenticated (events.Authenticated) until they are answered. A stranger's
// request, however slow, never holds the pipeline back.
func (p *intakeFirst) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var once sync.Once
		marked := false
		ctx := events.WithOnAuthenticated(r.Context(), func() {
			once.Do(func() {
				marked = true
				p.mu.Lock()
				if p.active == 0 {
					p.idle = make(chan struct{})
				}
				p.active++
				p.mu.Unlock()
			})
		})
		defer func() {
			once.Do(func() {}) // no mark after the answer
			if !marked {
				return
			}
			p.mu.Lock()
			p.active--
			if p.active == 0 {
				close(p.idle)
			}
			p.mu.Unlock()
		}()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// inFlight is the number of authenticated intake requests in flight.
func (p *intakeFirst) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active
}

// yield waits until no intake request is in flight, at most max.
func (p *intakeFirst) yield(max time.Duration) {
	p.mu.Lock()
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return
	default:
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}
