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
// intake is busy, pipeline work waits before it starts (docs/decisions/0005).
// For the first hold of a busy spell nothing starts; after that one waiting
// start is let go every share, oldest first, so that a steady stream of
// hooks slows revocations to a bounded rate and never starves them.
//
// Nothing is let go in a herd. Go's scheduler runs goroutines in the order
// they became runnable, and an execution trace of the benchmark showed what
// a herd does: 16 to 74 held goroutines let go together (when the last
// request in flight was answered), and the next requests, woken by the
// network a moment later, queued behind all of them for 12–21 ms. So once
// intake is quiet the waiting are let go step at a time every pace, and
// intake counts as quiet only after quiet without a request in flight: an
// IdP's requests come in waves (Okta sends a hook's next delivery when one
// is answered), and in-flight intake touches zero between requests of one
// wave.
type intakeFirst struct {
	hold, share, quiet time.Duration
	step               int           // waiters let go at a time once intake is quiet
	pace               time.Duration // between steps

	mu        sync.Mutex
	active    int
	quietNow  bool          // intake has been quiet for quiet: nothing waits
	lulls     uint64        // counts the moments in-flight intake fell to zero; a newer one cancels an older lull's timer
	busySince time.Time     // when intake last stopped being quiet
	waiting   []chan<- any  // held starts, oldest first
	letting   bool          // a goroutine is letting them go
	quieted   chan struct{} // wakes the letting goroutine when intake falls quiet
}

func newIntakeFirst(hold, share, quiet time.Duration) *intakeFirst {
	return &intakeFirst{hold: hold, share: share, quiet: quiet, step: 2, pace: 250 * time.Microsecond,
		quietNow: true, quieted: make(chan struct{}, 1)}
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
			if p.quietNow {
				p.quietNow, p.busySince = false, time.Now()
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
				p.lulls++
				if p.quiet <= 0 {
					p.release()
				} else {
					mine := p.lulls
					time.AfterFunc(p.quiet, func() {
						p.mu.Lock()
						if p.active == 0 && p.lulls == mine {
							p.release()
						}
						p.mu.Unlock()
					})
				}
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

// release marks intake quiet: what waits is let go, step at a time, and
// nothing waits any more. Under p.mu.
func (p *intakeFirst) release() {
	p.quietNow = true
	if p.letting {
		select {
		case p.quieted <- struct{}{}:
		default:
		}
	}
}

// letGo lets the waiting go, oldest first: none during the first hold of a
// busy spell, then one every share while intake stays busy, and step every
// pace once it is quiet. It runs while anything waits.
func (p *intakeFirst) letGo() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		p.mu.Lock()
		if len(p.waiting) == 0 { // only now: a start let go is a share's, even if none follows it
			p.waiting, p.letting = nil, false
			p.mu.Unlock()
			return
		}
		var n int
		var wait time.Duration
		switch held := time.Since(p.busySince); {
		case p.quietNow:
			n, wait = p.step, p.pace
		case held >= p.hold:
			n, wait = 1, p.share
		default:
			wait = p.hold - held
		}
		n = min(n, len(p.waiting))
		let := p.waiting[:n:n]
		p.waiting = p.waiting[n:]
		p.mu.Unlock()
		for _, w := range let {
			close(w)
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-p.quieted:
		}
	}
}

// inFlight is the number of authenticated intake requests in flight.
func (p *intakeFirst) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active
}

// yield returns at once while intake is quiet; otherwise it waits its turn
// (letGo).
func (p *intakeFirst) yield() {
	p.mu.Lock()
	if p.quietNow {
		p.mu.Unlock()
		return
	}
	w := make(chan any)
	p.waiting = append(p.waiting, w)
	if !p.letting {
		select { // a wake-up the last letting goroutine left unread
		case <-p.quieted:
		default:
		}
		p.letting = true
		go p.letGo()
	}
	p.mu.Unlock()
	<-w
}
