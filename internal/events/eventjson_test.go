package events

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/jsonform"
	"github.com/lifecycle-worker/lifecycle-worker/internal/jsonform/jsonformtest"
)

// The codec knows Event's fields by name and order. A field added to Event
// must be taught to decodeEvent, and to this list (its subject and scope
// are guarded with the REVOKE job's codec, which shares them).
func TestEventCodecKnowsEveryField(t *testing.T) {
	var have []string
	for f := range reflect.TypeFor[Event]().Fields() {
		have = append(have, f.Name+" "+f.Tag.Get("json"))
	}
	want := "ID id; Source source; Kind kind; Subject subject; Scope scope; OccurredAt occurred_at; ReceivedAt received_at; " +
		"Cause cause; Raw raw,omitempty; rawValid "
	if got := strings.Join(have, "; "); got != want {
		t.Fatalf("Event's fields changed:\n have %s\n want %s\nteach eventjson.go the new ones", got, want)
	}
}

var strange = []string{"", "a", `quote " inside`, `back\slash`, "a<b", "a&b", "line\nbreak\t", "\x00\x1f",
	"José", "\u2028", "bad \xff utf8", "emoji 😀"}

func randomEvent(r *rand.Rand) Event {
	pick := func() string {
		if r.IntN(3) == 0 {
			return strange[r.IntN(len(strange))]
		}
		return fmt.Sprintf("okta:%07d", r.IntN(1e7))
	}
	tm := func() time.Time {
		t := time.Unix(r.Int64N(4e9), r.Int64N(1e9))
		if r.IntN(2) == 0 {
			return t.UTC()
		}
		return t.In(time.FixedZone("", -5*3600))
	}
	refs := func() (out []ScopeRef) {
		for range r.IntN(3) {
			ref := ScopeRef{ID: pick()}
			if r.IntN(2) == 0 {
				ref.Name = pick()
			}
			out = append(out, ref)
		}
		return out
	}
	e := Event{ID: pick(), Source: Source(pick()), Kind: Kind(pick()), OccurredAt: tm(), ReceivedAt: tm(), Cause: pick(),
		Scope: Scope{Apps: refs(), Groups: refs()}}
	for _, f := range []*string{&e.Subject.Issuer, &e.Subject.ID, &e.Subject.Login, &e.Subject.Email, &e.Subject.SCIMID, &e.Subject.ExternalID} {
		if r.IntN(2) == 0 {
			*f = pick()
		}
	}
	switch r.IntN(4) {
	case 0:
	case 1:
		e.Raw, _ = json.Marshal(map[string]string{"uuid": pick(), "eventType": "user.lifecycle.deactivate"})
	case 2:
		e.Raw = json.RawMessage(`{ "spaced" : [1, 2 ,3], "html": "<b>&</b>" }`)
	default:
		e.Raw = json.RawMessage(`{}`)
	}
	return e
}

func checkDecodeEvent(t *testing.T, data []byte) {
	t.Helper()
	jsonformtest.Decodes(t, data, DecodeEvent)
}

// DecodeEvent reads what Encode writes as json.Unmarshal does.
func TestDecodeEventIsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 20000 {
		e := randomEvent(r)
		b, err := e.Encode()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		checkDecodeEvent(t, b)
	}
}

// The short path reads the intake's events; an event of another form
// decodes (or fails) as json.Unmarshal does.
func TestDecodeEventOtherFormsAsEncodingJSON(t *testing.T) {
	ev := `{"id":"okta:1","source":"okta-hook","kind":"deprovisioned","subject":{"issuer":"https://acme.okta.com","id":"00u1","email":"a@example.com"},"scope":{"apps":[{"id":"0oa1","name":"App"}],"groups":[{"id":"00g1"}]},"occurred_at":"2026-11-26T09:00:00Z","received_at":"2026-12-01T14:23:00.5Z","cause":"user.lifecycle.deactivate","raw":{"uuid":"1","eventType":"user.lifecycle.deactivate"}}`
	var short Event
	if d := jsonform.NewReader([]byte(ev)); !decodeEvent(d, &short) || !d.Done() {
		t.Fatal("the intake's form is not on the short path")
	}
	forms := []string{ev,
		strings.Replace(ev, `,"raw":{"uuid":"1","eventType":"user.lifecycle.deactivate"}`, ``, 1),
		strings.Replace(ev, `"raw":{"uuid":"1","eventType":"user.lifecycle.deactivate"}`, `"raw":null`, 1),
		strings.Replace(ev, `"raw":{"uuid":"1","eventType":"user.lifecycle.deactivate"}`, `"raw":[1,2]`, 1),
		strings.Replace(ev, `"raw":{"uuid":"1","eventType":"user.lifecycle.deactivate"}`, `"raw": {"uuid":"1"}`, 1),
		strings.Replace(ev, `"raw":{"uuid":"1","eventType":"user.lifecycle.deactivate"}`, `"raw":{"uuid":"1"} `, 1),
		strings.Replace(ev, `"raw":{"uuid":"1","eventType":"user.lifecycle.deactivate"}`, `"raw":{"uuid":"1"`, 1),
		strings.Replace(ev, `"raw":{"uuid":"1","eventType":"user.lifecycle.deactivate"}`, `"raw":{"uuid":"1"}}{`, 1),
		strings.Replace(ev, `"scope":{"apps":[{"id":"0oa1","name":"App"}],"groups":[{"id":"00g1"}]}`, `"scope":{}`, 1),
		strings.Replace(ev, `"scope":{"apps":[{"id":"0oa1","name":"App"}],"groups":[{"id":"00g1"}]}`, `"scope":null`, 1),
		strings.Replace(ev, `"apps":[{"id":"0oa1","name":"App"}],`, ``, 1),
		strings.Replace(ev, `"subject":{"issuer":"https://acme.okta.com","id":"00u1"`, `"subject":{"id":"00u1","issuer":"https://acme.okta.com"`, 1),
		strings.Replace(ev, `"cause":"user.lifecycle.deactivate",`, ``, 1),
		strings.Replace(ev, `"id":"okta:1"`, `"id":"okta:\u0031"`, 1),
		strings.Replace(ev, `"kind":"deprovisioned"`, `"kind":7`, 1),
		strings.Replace(ev, `"occurred_at":"2026-11-26T09:00:00Z"`, `"occurred_at":"yesterday"`, 1),
		strings.Replace(ev, `"received_at":"2026-12-01T14:23:00.5Z",`, ``, 1),
		`{"id":"okta:1","extra":1}`, ev + " ", ev + "x", ev[:len(ev)-1], `{}`, `null`, ``, `[]`,
	}
	for _, f := range forms {
		checkDecodeEvent(t, []byte(f))
	}
}

// Any bytes decode as json.Unmarshal decodes them.
func FuzzEventJSON(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 10))
	for range 20 {
		b, _ := randomEvent(r).Encode()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDecodeEvent(t, data) })
}

// BenchmarkDecodeEvent decodes an event as the planner gets it from
// LIFECYCLE, with Okta's documented deactivation event as its raw.
func BenchmarkDecodeEvent(b *testing.B) {
	raw, err := os.ReadFile("../../examples/okta-hooks/02-okta-docs-logevent-user.lifecycle.deactivate.json")
	if err != nil {
		b.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 14, 23, 0, 500000000, time.UTC)
	e := Event{ID: "okta:1", Source: "okta-hook", Kind: "deprovisioned", OccurredAt: at, ReceivedAt: at, Cause: "user.lifecycle.deactivate",
		Subject: Subject{Issuer: "https://acme.okta.com", ID: "00u1", Login: "a@example.com", Email: "a@example.com"}, Raw: raw}
	data, err := e.Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("short", func(b *testing.B) {
		for b.Loop() {
			if _, err := DecodeEvent(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var e Event
			if err := json.Unmarshal(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
