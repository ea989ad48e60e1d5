package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/time/rate"
)

// What unauthenticated input may write. Every string a refusal record
// carries (error, detail values, subject, ids) is cut to MaxFieldBytes with
// the SHA-256 of the whole value, and a refusal's detail is at most
// MaxDetailBytes: no refusal record holds more than about 3 KB of what a
// stranger sent, whatever they sent.
const (
	MaxFieldBytes  = 256
	MaxDetailBytes = 2048
)

// BudgetConfig bounds the refusals written one by one. Refusals past a
// budget are counted, not lost: they are summarised per endpoint and source
// address every flush.
type BudgetConfig struct {
	// Per (endpoint, source address): records a second, with bursts, and
	// bytes a second, with bursts.
	PerSource      float64
	SourceBurst    int
	PerSourceBytes float64
	SourceBytes    int
	// All sources together.
	Global           float64
	GlobalBurst      int
	GlobalBytes      float64
	GlobalBurstBytes int
	// MaxSources bounds the (endpoint, address) pairs tracked one by one;
	// past it, new addresses share one "other" budget and summary.
	MaxSources int
	// MaxSummaries bounds the summary records of one flush; the least
	// frequent sources are folded into one record per endpoint and type.
	MaxSummaries int
	// Pressure, when it reports true (the trail's store is nearly full),
	// holds back every refusal: only summaries are written.
	Pressure func() bool
	// Counted is told of every refusal, written or held back (metrics).
	Counted func(source string, typ Type)
	Now     func() time.Time
}

// DefaultBudget is the budget serve uses.
func DefaultBudget() BudgetConfig {
	return BudgetConfig{
		PerSource: 2, SourceBurst: 20, PerSourceBytes: 4 << 10, SourceBytes: 32 << 10,
		Global: 20, GlobalBurst: 100, GlobalBytes: 32 << 10, GlobalBurstBytes: 128 << 10,
		MaxSources: 4096, MaxSummaries: 50, Now: time.Now,
	}
}

// RefusalBudget keeps a flood of refused requests from flooding the trail.
// An endpoint the IdP must reach is reachable by anyone, and every refusal
// is a record; past a budget per source address (and one for all sources),
// refusals (auth.failed, event.rejected) are counted instead, and each
// flush writes one record per endpoint, source and type saying how many were
// held back, when, and the last reason. Nothing goes unrecorded; a flood
// from one address neither fills the disk nor hides another's refusals.
type RefusalBudget struct {
	next Recorder
	cfg  BudgetConfig

	mu      sync.Mutex
	global  *rate.Limiter
	gBytes  *rate.Limiter
	sources map[string]*sourceBudget
	held    map[string]*heldBack // by source key + type
}

type sourceBudget struct {
	count, bytes *rate.Limiter
	seen         time.Time
}

type heldBack struct {
	typ         Type
	source      string
	remote      string
	n           int
	first, last time.Time
	lastError   string
}

// NewRefusalBudget passes refusal records within cfg's budgets on to next.
func NewRefusalBudget(next Recorder, cfg BudgetConfig) *RefusalBudget {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &RefusalBudget{next: next, cfg: cfg,
		global:  rate.NewLimiter(rate.Limit(cfg.Global), cfg.GlobalBurst),
		gBytes:  rate.NewLimiter(rate.Limit(cfg.GlobalBytes), cfg.GlobalBurstBytes),
		sources: map[string]*sourceBudget{}, held: map[string]*heldBack{}}
}

// IsRefusal reports whether r is a refusal of outside input.
func IsRefusal(r Record) bool { return r.Type == TypeAuthFailed || r.Type == TypeEventRejected }

// Record passes records on, bounding refusals and holding back those over
// the budget.
func (b *RefusalBudget) Record(ctx context.Context, recs ...Record) error {
	keep := recs[:0:0]
	now := b.cfg.Now()
	pressure := b.cfg.Pressure != nil && b.cfg.Pressure()
	b.mu.Lock()
	for _, r := range recs {
		if !IsRefusal(r) {
			keep = append(keep, r)
			continue
		}
		r = Bound(r)
		if b.cfg.Counted != nil {
			b.cfg.Counted(r.Source, r.Type)
		}
		remote := remoteOf(r)
		key := r.Source + "|" + remote
		sb := b.source(key, now)
		if sb == nil {
			key, remote = r.Source+"|other", "other"
			sb = b.source(key, now)
		}
		size := len(r.Error) + len(r.Detail) + 256 // the envelope: ids, times, type
		if !pressure && sb.count.AllowN(now, 1) && sb.bytes.AllowN(now, size) && b.global.AllowN(now, 1) && b.gBytes.AllowN(now, size) {
			keep = append(keep, r)
			continue
		}
		hk := key + "|" + string(r.Type)
		h := b.held[hk]
		if h == nil {
			h = &heldBack{typ: r.Type, source: r.Source, remote: remote, first: r.Time}
			b.held[hk] = h
		}
		h.n++
		h.last, h.lastError = r.Time, r.Error
	}
	b.mu.Unlock()
	if len(keep) == 0 {
		return nil
	}
	return b.next.Record(ctx, keep...)
}

// source returns the budget of key, or nil when too many are tracked.
func (b *RefusalBudget) source(key string, now time.Time) *sourceBudget {
	if sb := b.sources[key]; sb != nil {
		sb.seen = now
		return sb
	}
	if b.cfg.MaxSources > 0 && len(b.sources) >= b.cfg.MaxSources {
		// Forget sources quiet for a minute; their limiters are full again.
		for k, sb := range b.sources {
			if now.Sub(sb.seen) > time.Minute {
				delete(b.sources, k)
			}
		}
		if len(b.sources) >= b.cfg.MaxSources && !strings.HasSuffix(key, "|other") {
			return nil
		}
	}
	sb := &sourceBudget{count: rate.NewLimiter(rate.Limit(b.cfg.PerSource), b.cfg.SourceBurst),
		bytes: rate.NewLimiter(rate.Limit(b.cfg.PerSourceBytes), b.cfg.SourceBytes), seen: now}
	b.sources[key] = sb
	return sb
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

// Flush writes one record per endpoint, source address and type for what
// was held back (the most frequent MaxSummaries; the rest folded into one
// per endpoint and type). On failure the counts are kept for the next flush.
func (b *RefusalBudget) Flush(ctx context.Context) error {
	b.mu.Lock()
	held := b.held
	b.held = map[string]*heldBack{}
	b.mu.Unlock()
	if len(held) == 0 {
		return nil
	}
	all := make([]*heldBack, 0, len(held))
	for _, h := range held {
		all = append(all, h)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].source+all[i].remote+string(all[i].typ) < all[j].source+all[j].remote+string(all[j].typ)
	})
	limit := b.cfg.MaxSummaries
	if limit <= 0 {
		limit = len(all)
	}
	type foldKey struct {
		source string
		typ    Type
	}
	folded := map[foldKey]*heldBack{}
	var foldOrder []foldKey
	var recs []Record
	summary := func(h *heldBack, addresses int) Record {
		d := map[string]any{"held_back": h.n, "first": h.first, "last": h.last, "remote": h.remote}
		if addresses > 0 {
			d["addresses"] = addresses
		}
		return Record{ID: "budget/" + uuid.NewString(), Time: b.cfg.Now().UTC(), Type: h.typ, Source: h.source, Outcome: "rejected",
			Error:  fmt.Sprintf("%d more refused requests held back by the refusal budget; the last: %s", h.n, h.lastError),
			Detail: Detail(d)}
	}
	for i, h := range all {
		if i < limit {
			recs = append(recs, summary(h, 0))
			continue
		}
		k := foldKey{h.source, h.typ}
		f := folded[k]
		if f == nil {
			f = &heldBack{typ: h.typ, source: h.source, remote: "other", first: h.first}
			folded[k] = f
			foldOrder = append(foldOrder, k)
		}
		f.n++ // counted in addresses below
		f.first, f.last = minTime(f.first, h.first), maxTime(f.last, h.last)
		f.lastError = h.lastError
	}
	for _, k := range foldOrder {
		f := folded[k]
		addresses := f.n
		f.n = 0
		for _, h := range all[limit:] {
			if h.source == k.source && h.typ == k.typ {
				f.n += h.n
			}
		}
		recs = append(recs, summary(f, addresses))
	}
	if err := b.next.Record(ctx, recs...); err != nil {
		b.mu.Lock()
		for k, h := range held { // keep them for the next flush
			if cur := b.held[k]; cur != nil {
				h.n += cur.n
				h.last, h.lastError = cur.last, cur.lastError
			}
			b.held[k] = h
		}
		b.mu.Unlock()
		return err
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// remoteOf is the "remote" of a refusal's detail, when it names one.
func remoteOf(r Record) string {
	var d struct {
		Remote string `json:"remote"`
	}
	_ = json.Unmarshal(r.Detail, &d)
	return d.Remote
}

// Bound cuts what a refusal record carries from outside to the documented
// sizes: each string to MaxFieldBytes (valid UTF-8, with the length and
// SHA-256 of the whole value), the detail to MaxDetailBytes.
func Bound(r Record) Record {
	r.ID, r.EventID, r.Kind, r.Target = BoundString(r.ID), BoundString(r.EventID), BoundString(r.Kind), BoundString(r.Target)
	r.Error = BoundString(r.Error)
	if r.Subject != nil {
		s := *r.Subject
		s.Issuer, s.ID, s.Login, s.Email = BoundString(s.Issuer), BoundString(s.ID), BoundString(s.Login), BoundString(s.Email)
		r.Subject = &s
	}
	if len(r.Detail) > 0 {
		var v any
		if err := json.Unmarshal(r.Detail, &v); err != nil {
			r.Detail = Detail(map[string]any{"undecodable_detail": digest(string(r.Detail))})
		} else if b, err := json.Marshal(boundValue(v, 0)); err == nil {
			r.Detail = b
		}
		if len(r.Detail) > MaxDetailBytes {
			r.Detail = Detail(map[string]any{"detail_cut": digest(string(r.Detail))})
		}
	}
	return r
}

// BoundString returns s when it is valid UTF-8 whose JSON encoding takes at
// most MaxFieldBytes, else its first characters (as many as fit, encoded)
// and a note with the whole value's length and SHA-256. The JSON size is
// what counts: the record is stored encoded, and a character such as & or
// a control character takes six bytes there.
func BoundString(s string) string {
	if utf8.ValidString(s) && (len(s) <= MaxFieldBytes/6 || jsonLen(s) <= MaxFieldBytes) {
		return s
	}
	return digest(s)
}

// jsonLen is the length of s inside a JSON string as encoding/json writes
// it (HTML-safe: <, > and & escaped).
func jsonLen(s string) int {
	n := 0
	for _, r := range s {
		n += runeJSONLen(r)
	}
	return n
}

func runeJSONLen(r rune) int {
	switch {
	case r == '"' || r == '\\':
		return 2
	case r < 0x20 || r == '<' || r == '>' || r == '&' || r == 0x2028 || r == 0x2029 || r == utf8.RuneError:
		return 6
	default:
		return utf8.RuneLen(r)
	}
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	var head strings.Builder
	budget := MaxFieldBytes - 96
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if budget -= runeJSONLen(r); budget < 0 {
			break
		}
		head.WriteRune(r)
	}
	return fmt.Sprintf("%s…[cut: %d bytes, sha256 %s]", head.String(), len(s), hex.EncodeToString(sum[:]))
}

// boundValue bounds every string of a decoded JSON value, and the number of
// elements of its arrays and objects.
func boundValue(v any, depth int) any {
	const maxElems = 16
	if depth > 4 {
		return "[nested too deep]"
	}
	switch t := v.(type) {
	case string:
		return BoundString(t)
	case []any:
		out := make([]any, 0, min(len(t), maxElems))
		for i, e := range t {
			if i == maxElems {
				out = append(out, fmt.Sprintf("[%d more]", len(t)-maxElems))
				break
			}
			out = append(out, boundValue(e, depth+1))
		}
		return out
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := map[string]any{}
		for i, k := range keys {
			if i == maxElems {
				out["_more_keys"] = len(keys) - maxElems
				break
			}
			out[BoundString(k)] = boundValue(t[k], depth+1)
		}
		return out
	}
	return v
}
