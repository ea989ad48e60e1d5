package revoke

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Go benchmarks of the job codec (go test -bench . ./internal/revoke); the
// product's speed is measured by the benchmark program (bench/).

func benchBatch() Batch {
	var b Batch
	now := time.Now().UTC()
	for i := range 50 {
		b.Jobs = append(b.Jobs, Job{ID: fmt.Sprintf("okta:bench-%07d|as3", i), EventID: fmt.Sprintf("okta:bench-%07d", i), Target: "as3",
			Kind: events.KindDeprovisioned, Source: "okta-hook", Cause: "user.lifecycle.deactivate",
			Subject:    events.Subject{Issuer: "https://acme.okta.com", ID: fmt.Sprintf("00u%07d", i), Login: fmt.Sprintf("user%07d@example.com", i), Email: fmt.Sprintf("user%07d@example.com", i)},
			OccurredAt: now.Add(-time.Hour), ReceivedAt: now, PlannedAt: now})
	}
	return b
}

func BenchmarkDecodeBatch(b *testing.B) {
	data, err := json.Marshal(benchBatch())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := DecodeBatch(data, 50); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeJob(b *testing.B) {
	j := benchBatch().Jobs[0]
	for b.Loop() {
		if _, err := EncodeJob(j); err != nil {
			b.Fatal(err)
		}
	}
}
