package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"
)

// Go benchmarks of the audit path's pieces (go test -bench . ./internal/audit);
// the product's speed is measured by the benchmark program (bench/).

var benchBody = []byte(`{"id":"okta:bench-0000050|as8/succeeded","time":"2026-12-01T14:23:00.818600572Z","type":"revocation.succeeded","event_id":"okta:bench-0000050","source":"okta-hook","kind":"deprovisioned","subject":{"issuer":"https://acme.okta.com","id":"00u0000050","login":"user0000050@example.com","email":"user0000050@example.com"},"target":"as8","driver":"gtr","attempt":1,"outcome":"succeeded","http_status":204,"latency_ms":5,"occurred_at":"2026-11-26T09:00:00Z","detail":{"exposure":"unknown: the target declares no max_token_lifetime","jti":"9863153d-85ab-4a92-acb0-0821fa41b4bc","sub_id_format":"email","time_to_revoke_ms":242}}`)

func BenchmarkDecode(b *testing.B) {
	for b.Loop() {
		if _, err := Decode(benchBody); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	var r Record
	if err := json.Unmarshal(benchBody, &r); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Encode(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend indexes revocation records in batches of 256 into an
// index that already holds 200,000, ten records per event. "in-order": an
// event's ten together, events and their subjects in sequence, as the
// benchmark program's burst makes them. "spread": each record of a random
// one of 10,000 events in flight, each with a random subject, as records
// arrive when many people are offboarded at once and targets answer in
// their own time.
func BenchmarkAppend(b *testing.B) {
	for _, spread := range []bool{false, true} {
		name := map[bool]string{false: "in-order", true: "spread"}[spread]
		b.Run(name, func(b *testing.B) { benchAppend(b, spread) })
	}
}

func benchAppend(b *testing.B, spread bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := OpenStore(ctx, filepath.Join(b.TempDir(), "audit.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const batch, inFlight = 256, 10000
	type event struct{ n, key, next int }
	r := rand.New(rand.NewPCG(1, 2))
	var seq uint64
	var events int
	newEvent := func() event {
		events++
		key := events
		if spread {
			key = int(r.Int32()) // a subject's place in the indexes: anywhere
		}
		return event{n: events, key: key}
	}
	flight := make([]event, inFlight)
	for i := range flight {
		flight[i] = newEvent()
	}
	next := func() []Entry {
		es := make([]Entry, 0, batch)
		for len(es) < batch {
			i := 0
			if spread {
				i = r.IntN(inFlight)
			}
			ev := &flight[i]
			id := fmt.Sprintf("okta:bench-%07d", ev.n)
			sub := &Subject{Issuer: "https://acme.okta.com", ID: fmt.Sprintf("00u%010d", ev.key), Email: fmt.Sprintf("user%010d@example.com", ev.key)}
			now := time.Now().UTC()
			seq++
			e, err := NewEntry(seq, Record{ID: fmt.Sprintf("%s|as%d/succeeded", id, ev.next), Time: now, Type: TypeRevocationSucceeded,
				EventID: id, Source: "okta-hook", Kind: "deprovisioned", Subject: sub, Target: fmt.Sprintf("as%d", ev.next), Driver: "gtr",
				Attempt: 1, Outcome: "succeeded", HTTPStatus: 204, LatencyMS: 3, OccurredAt: &now,
				Detail: json.RawMessage(`{"exposure":"unknown: the target declares no max_token_lifetime","time_to_revoke_ms":242}`)})
			if err != nil {
				b.Fatal(err)
			}
			e.StreamSeq = seq
			es = append(es, e)
			if ev.next++; ev.next == 10 {
				*ev = newEvent()
			}
		}
		return es
	}
	for range 200000 / batch { // the index as it is some way into a day
		if err := s.Append(ctx, next()); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		b.StopTimer()
		es := next()
		b.StartTimer()
		if err := s.Append(ctx, es); err != nil {
			b.Fatal(err)
		}
	}
}
