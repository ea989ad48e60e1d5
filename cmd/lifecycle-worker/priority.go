package main

import (
	"net/http"
	"sync"
	"time"
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

// wrap marks requests to h as intake.
func (p *intakeFirst) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if p.active == 0 {
			p.idle = make(chan struct{})
		}
		p.active++
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			p.active--
			if p.active == 0 {
				close(p.idle)
			}
			p.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
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
