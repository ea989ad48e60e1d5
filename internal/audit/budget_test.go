package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
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
// records always pass; a flush says how many were held back, from where;
// a failed flush keeps the counts for the next.
func TestRefusalBudget(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	next := &recorded{}
	b := NewRefusalBudget(next, 1, 5, func() time.Time { return now })
	ctx := context.Background()
	for i := range 100 {
		remote := "203.0.113.7"
		if i%10 == 0 {
			remote = "198.51.100.9"
		}
		_ = b.Record(ctx, Record{ID: fmt.Sprint("r", i), Time: now, Type: TypeAuthFailed, Source: "okta-hook", Error: "wrong secret",
			Detail: Detail(map[string]any{"remote": remote})})
	}
	_ = b.Record(ctx, Record{ID: "other-source", Time: now, Type: TypeAuthFailed, Source: "scim"})
	_ = b.Record(ctx, Record{ID: "not-a-refusal", Time: now, Type: TypeEventReceived, Source: "okta-hook"})
	if len(next.recs) != 7 {
		t.Fatalf("%d records passed, want the burst of 5, the other source's and the receipt", len(next.recs))
	}
	next.fail = true
	if err := b.Flush(ctx); err == nil {
		t.Fatal("flush into a failing recorder reported success")
	}
	_ = b.Record(ctx, Record{ID: "late", Time: now, Type: TypeAuthFailed, Source: "okta-hook", Error: "wrong secret"})
	next.fail = false
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sum := next.recs[len(next.recs)-1]
	var d struct {
		HeldBack int            `json:"held_back"`
		Remotes  map[string]int `json:"remotes"`
	}
	_ = json.Unmarshal(sum.Detail, &d)
	if len(next.recs) != 8 || sum.Type != TypeAuthFailed || sum.Source != "okta-hook" || d.HeldBack != 96 ||
		d.Remotes["203.0.113.7"] != 86 || d.Remotes["198.51.100.9"] != 9 {
		t.Errorf("summary %+v, detail %s", sum, sum.Detail)
	}
	// Time refills the budget.
	now = now.Add(10 * time.Second)
	_ = b.Record(ctx, Record{ID: "later", Time: now, Type: TypeAuthFailed, Source: "okta-hook"})
	if next.recs[len(next.recs)-1].ID != "later" {
		t.Error("the budget did not refill")
	}
}
