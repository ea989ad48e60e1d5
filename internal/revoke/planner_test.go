package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

type inventory struct {
	grants []Grant
	err    error
}

func (i inventory) Grants(context.Context, events.Subject) ([]Grant, error) { return i.grants, i.err }

func planDetail(t *testing.T, inv Inventory, ev events.Event, targets ...*Target) map[string]any {
	t.Helper()
	rec := &memRecorder{}
	p, err := NewPlanner(targets, &memQueue{}, rec, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WithInventory(inv).Plan(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(rec.recs[1].Detail, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// A grant counts as covered only by a target that is planned for this
// event; a target for that server that skips the event leaves it exposed.
// An inventory that cannot be read is noted, and the plan goes on.
func TestPlanNamesIDJAGGrants(t *testing.T) {
	ev := events.Event{ID: "okta:1", Kind: events.KindDeprovisioned, Subject: events.Subject{ID: "00u1", Email: "a@example.com"}}
	linear := &Target{Name: "linear", Issuer: "https://auth.linear.example/", Kinds: []events.Kind{events.KindDeprovisioned}}
	notion := &Target{Name: "notion", Issuer: "https://auth.notion.example", Kinds: []events.Kind{events.KindSuspended}}
	inv := inventory{grants: []Grant{{Audience: "https://auth.linear.example"}, {Audience: "https://auth.notion.example"}, {Audience: "https://shadow.example"}}}
	d := planDetail(t, inv, ev, linear, notion)
	grants, _ := d["id_jag_grants"].([]any)
	uncovered, _ := d["uncovered_audiences"].([]any)
	if len(grants) != 3 || grants[0].(map[string]any)["target"] != "linear" || grants[1].(map[string]any)["target"] != nil ||
		len(uncovered) != 2 || uncovered[0] != "https://auth.notion.example" || uncovered[1] != "https://shadow.example" {
		t.Errorf("detail %v", d)
	}
	d = planDetail(t, inventory{err: errors.New("kv away")}, ev, linear)
	if d["id_jag_inventory"] != "unavailable: kv away" || d["targets"].([]any)[0] != "linear" {
		t.Errorf("detail %v", d)
	}
	if d = planDetail(t, inventory{}, ev, linear); d["id_jag_grants"] != nil || d["uncovered_audiences"] != nil {
		t.Errorf("no grants, but detail %v", d)
	}
}
