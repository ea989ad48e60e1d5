package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

type recorded struct {
	recs []Record
	fail bool
}

func (r *recorded) Record(_ context.Context, recs ...Record) error {
	if r.fail {
		return errors.New("broker down")
	}
	r.recs = append(r.recs, recs...)
	return nil
}

// Past the budget, refusals are counted, not written one by one; other
// records always pass; the budget is per endpoint and source address, so a
// flood from one address leaves another's refusals on record; a flush says
// how many were held back per source; a failed flush keeps the counts for
// the next; time refills the budget.
func TestRefusalBudget(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	next := &recorded{}
	cfg := BudgetConfig{PerSource: 1, SourceBurst: 5, PerSourceBytes: 1 << 20, SourceBytes: 1 << 20, Global: 100, GlobalBurst: 100,
		GlobalBytes: 1 << 20, GlobalBurstBytes: 1 << 20, MaxSources: 100, MaxSummaries: 10, Now: func() time.Time { return now }}
	counted := 0
	cfg.Counted = func(string, Type) { counted++ }
	b := NewRefusalBudget(next, cfg)
	ctx := context.Background()
	refuse := func(id, source, remote string) {
		_ = b.Record(ctx, Record{ID: id, Time: now, Type: TypeAuthFailed, Source: source, Error: "wrong secret",
			Detail: Detail(map[string]any{"remote": remote})})
	}
	for i := range 100 {
		refuse(fmt.Sprint("r", i), "okta-hook", "203.0.113.7")
	}
	refuse("real-1", "okta-hook", "198.51.100.9") // another address: its own budget
	refuse("other-endpoint", "scim", "203.0.113.7")
	_ = b.Record(ctx, Record{ID: "not-a-refusal", Time: now, Type: TypeEventReceived, Source: "okta-hook"})
	if len(next.recs) != 8 || counted != 102 {
		t.Fatalf("%d records passed (want the flood's burst of 5, the other address's, the other endpoint's and the receipt), %d counted", len(next.recs), counted)
	}
	next.fail = true
	if err := b.Flush(ctx); err == nil {
		t.Fatal("flush into a failing recorder reported success")
	}
	refuse("late", "okta-hook", "203.0.113.7")
	next.fail = false
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sum := next.recs[len(next.recs)-1]
	var d struct {
		HeldBack int    `json:"held_back"`
		Remote   string `json:"remote"`
	}
	_ = json.Unmarshal(sum.Detail, &d)
	if len(next.recs) != 9 || sum.Type != TypeAuthFailed || sum.Source != "okta-hook" || d.HeldBack != 96 || d.Remote != "203.0.113.7" {
		t.Errorf("summary %+v, detail %s", sum, sum.Detail)
	}
	// Time refills the budget.
	now = now.Add(10 * time.Second)
	refuse("later", "okta-hook", "203.0.113.7")
	if next.recs[len(next.recs)-1].ID != "later" {
		t.Error("the budget did not refill")
	}
	// Under pressure (the store nearly full) nothing is written one by one.
	b.cfg.Pressure = func() bool { return true }
	n := len(next.recs)
	refuse("pressed", "okta-hook", "192.0.2.1")
	if len(next.recs) != n {
		t.Error("a refusal was written under pressure")
	}
}

// Many addresses: the tracked sources and the summaries stay bounded.
func TestRefusalBudgetManySources(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	next := &recorded{}
	b := NewRefusalBudget(next, BudgetConfig{PerSource: 1, SourceBurst: 1, PerSourceBytes: 1 << 20, SourceBytes: 1 << 20, Global: 1, GlobalBurst: 1,
		GlobalBytes: 1 << 20, GlobalBurstBytes: 1 << 20, MaxSources: 50, MaxSummaries: 10, Now: func() time.Time { return now }})
	for i := range 5000 {
		_ = b.Record(context.Background(), Record{ID: fmt.Sprint("r", i), Time: now, Type: TypeAuthFailed, Source: "ssf",
			Detail: Detail(map[string]any{"remote": fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255)})})
	}
	if len(b.sources) > 51 {
		t.Errorf("%d sources tracked", len(b.sources))
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, r := range next.recs[1:] {
		var d struct {
			HeldBack int `json:"held_back"`
		}
		_ = json.Unmarshal(r.Detail, &d)
		total += d.HeldBack
	}
	if len(next.recs) > 1+11 || total != 4999 {
		t.Errorf("%d summary records holding %d refusals, want at most 11 holding 4999", len(next.recs)-1, total)
	}
}

// A refusal carries at most MaxFieldBytes of any string from outside, with
// the SHA-256 of the whole, and at most MaxDetailBytes of detail.
func TestBoundRefusal(t *testing.T) {
	big := strings.Repeat("A", 60000)
	r := Bound(Record{ID: "x", Type: TypeEventRejected, Error: big + "\xff", EventID: big,
		Subject: &Subject{Email: big}, Detail: Detail(map[string]any{"path": big, "list": make([]string, 1000), big: 1})})
	raw, _ := json.Marshal(r)
	if len(raw) > 4*MaxFieldBytes+MaxDetailBytes+200 {
		t.Errorf("bounded record is %d bytes", len(raw))
	}
	sum := sha256.Sum256([]byte(big + "\xff"))
	if !strings.Contains(r.Error, hex.EncodeToString(sum[:])) || !strings.Contains(r.Error, "60001 bytes") || !utf8.ValidString(r.Error) {
		t.Errorf("error %q does not name the whole value's size and hash", r.Error)
	}
	if small := Bound(Record{Error: "wrong secret"}); small.Error != "wrong secret" {
		t.Errorf("a short value was changed: %q", small.Error)
	}
}
