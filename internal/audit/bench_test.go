package audit

import (
	"context"
	"encoding/json"
	"fmt"
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

// BenchmarkAppend indexes revocation records in batches of 256, ten per
// event, as the indexer does under load.
func BenchmarkAppend(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := OpenStore(ctx, filepath.Join(b.TempDir(), "audit.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const batch = 256
	var seq uint64
	var event int
	next := func() []Entry {
		es := make([]Entry, 0, batch)
		for len(es) < batch {
			event++
			id := fmt.Sprintf("okta:bench-%07d", event)
			sub := &Subject{Issuer: "https://acme.okta.com", ID: fmt.Sprintf("00u%07d", event), Email: fmt.Sprintf("user%07d@example.com", event)}
			now := time.Now().UTC()
			for k := 0; k < 10 && len(es) < batch; k++ {
				seq++
				e, err := NewEntry(seq, Record{ID: fmt.Sprintf("%s|as%d/succeeded", id, k), Time: now, Type: TypeRevocationSucceeded,
					EventID: id, Source: "okta-hook", Kind: "deprovisioned", Subject: sub, Target: fmt.Sprintf("as%d", k), Driver: "gtr",
					Attempt: 1, Outcome: "succeeded", HTTPStatus: 204, LatencyMS: 3, OccurredAt: &now,
					Detail: json.RawMessage(`{"exposure":"unknown: the target declares no max_token_lifetime","time_to_revoke_ms":242}`)})
				if err != nil {
					b.Fatal(err)
				}
				es = append(es, e)
			}
		}
		return es
	}
	for i := 0; i < b.N; i += batch {
		b.StopTimer()
		es := next()
		b.StartTimer()
		if err := s.Append(ctx, es); err != nil {
			b.Fatal(err)
		}
	}
}
