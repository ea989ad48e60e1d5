package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/time/rate"
)

// RefusalBudget keeps a flood of refused requests from flooding the trail.
// An endpoint the IdP must reach is reachable by anyone, and every refusal
// is a record; past a rate per source, refusals (auth.failed,
// event.rejected) are counted instead, and each interval one record per
// source and type says how many were held back, when, from where, and the
// last reason. Nothing goes unrecorded; the trail grows by the summary.
type RefusalBudget struct {
	next  Recorder
	now   func() time.Time
	rate  rate.Limit
	burst int

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
	held     map[string]*heldBack // by source + type
}

type heldBack struct {
	typ         Type
	source      string
	n           int
	first, last time.Time
	remotes     map[string]int
	lastError   string
}

// NewRefusalBudget passes at most perSecond refusal records per source
// (bursts of burst) on to next.
func NewRefusalBudget(next Recorder, perSecond float64, burst int, now func() time.Time) *RefusalBudget {
	return &RefusalBudget{next: next, now: now, rate: rate.Limit(perSecond), burst: burst,
		limiters: map[string]*rate.Limiter{}, held: map[string]*heldBack{}}
}

// Record passes records on, holding back refusals over the budget.
func (b *RefusalBudget) Record(ctx context.Context, recs ...Record) error {
	keep := recs[:0:0]
	b.mu.Lock()
	for _, r := range recs {
		if r.Type != TypeAuthFailed && r.Type != TypeEventRejected {
			keep = append(keep, r)
			continue
		}
		l := b.limiters[r.Source]
		if l == nil {
			l = rate.NewLimiter(b.rate, b.burst)
			b.limiters[r.Source] = l
		}
		if l.AllowN(b.now(), 1) {
			keep = append(keep, r)
			continue
		}
		key := r.Source + "|" + string(r.Type)
		h := b.held[key]
		if h == nil {
			h = &heldBack{typ: r.Type, source: r.Source, first: r.Time, remotes: map[string]int{}}
			b.held[key] = h
		}
		h.n++
		h.last, h.lastError = r.Time, r.Error
		h.remotes[remoteOf(r)]++
	}
	b.mu.Unlock()
	if len(keep) == 0 {
		return nil
	}
	return b.next.Record(ctx, keep...)
}

// Run writes the summaries every interval, and once more when ctx ends.
func (b *RefusalBudget) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = b.Flush(final)
			cancel()
			return
		case <-t.C:
			_ = b.Flush(ctx)
		}
	}
}

// Flush writes one record per source and type for what was held back.
// On failure the counts are kept for the next flush.
func (b *RefusalBudget) Flush(ctx context.Context) error {
	b.mu.Lock()
	held := b.held
	b.held = map[string]*heldBack{}
	b.mu.Unlock()
	if len(held) == 0 {
		return nil
	}
	keys := make([]string, 0, len(held))
	for k := range held {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	recs := make([]Record, 0, len(held))
	for _, k := range keys {
		h := held[k]
		recs = append(recs, Record{ID: "budget/" + uuid.NewString(), Time: b.now().UTC(), Type: h.typ, Source: h.source,
			Outcome: "rejected", Error: fmt.Sprintf("%d more refused requests held back by the refusal budget; the last: %s", h.n, h.lastError),
			Detail: Detail(map[string]any{"held_back": h.n, "first": h.first, "last": h.last, "remotes": topRemotes(h.remotes, 10)})})
	}
	if err := b.next.Record(ctx, recs...); err != nil {
		b.mu.Lock()
		for k, h := range held { // keep them for the next flush
			if cur := b.held[k]; cur != nil {
				h.n += cur.n
				h.last, h.lastError = cur.last, cur.lastError
				for r, n := range cur.remotes {
					h.remotes[r] += n
				}
			}
			b.held[k] = h
		}
		b.mu.Unlock()
		return err
	}
	return nil
}

// remoteOf is the "remote" of a refusal's detail, when it names one.
func remoteOf(r Record) string {
	var d struct {
		Remote string `json:"remote"`
	}
	_ = json.Unmarshal(r.Detail, &d)
	return d.Remote
}

// topRemotes names the most frequent sources, most first.
func topRemotes(m map[string]int, n int) map[string]int {
	type kv struct {
		k string
		v int
	}
	all := make([]kv, 0, len(m))
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	out := map[string]int{}
	for _, e := range all[:min(n, len(all))] {
		out[e.k] = e.v
	}
	return out
}
