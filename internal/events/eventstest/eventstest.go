// Package eventstest has an in-memory broker for the intake packages' tests.
package eventstest

import (
	"context"
	"errors"
	"sync"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Broker is an events.Publisher and audit.Recorder in memory. Like the
// worker's, it refuses invalid events and drops an event whose ID it already
// holds (answering Duplicate); Fail makes publishing fail.
type Broker struct {
	mu      sync.Mutex
	Events  []events.Event
	Records []audit.Record
	Fail    bool
	seen    map[string]bool
}

// PublishEvents stores the events not seen before.
func (b *Broker) PublishEvents(_ context.Context, evs []events.Event) ([]events.Publication, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Fail {
		return nil, errors.New("broker down")
	}
	if b.seen == nil {
		b.seen = map[string]bool{}
	}
	for _, e := range evs {
		if err := e.Validate(); err != nil {
			return nil, err
		}
	}
	pubs := make([]events.Publication, 0, len(evs))
	for _, e := range evs {
		pubs = append(pubs, events.Publication{Duplicate: b.seen[e.ID]})
		if !b.seen[e.ID] {
			b.Events = append(b.Events, e)
		}
		b.seen[e.ID] = true
	}
	return pubs, nil
}

// SetFail makes publishing fail (true) or work again, safely while in use.
func (b *Broker) SetFail(fail bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.Fail = fail
}

// Record keeps the records.
func (b *Broker) Record(_ context.Context, recs ...audit.Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.Records = append(b.Records, recs...)
	return nil
}
