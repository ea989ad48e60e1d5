package revoke

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Attempt is one try at a job, kept until the job ends so that a dead
// letter carries its whole history and waiting (breaker, Retry-After) never
// counts as an attempt.
type Attempt struct {
	N          int       `json:"n"`
	At         time.Time `json:"at"`
	HTTPStatus int       `json:"http_status,omitempty"`
	LatencyMS  int64     `json:"latency_ms"`
	Outcome    string    `json:"outcome"`
	Error      string    `json:"error,omitempty"`
	// Due is when the next attempt may run (its backoff, a Retry-After, an
	// open breaker): kept with the attempts so that a redelivery that comes
	// sooner — the server's delay lost with a restart — still waits.
	Due time.Time `json:"due,omitzero"`
}

// AttemptLog stores the attempts of unfinished jobs (a NATS KV bucket, so
// that any replica continues where another stopped).
type AttemptLog interface {
	Load(ctx context.Context, key string) ([]Attempt, error)
	Save(ctx context.Context, key string, attempts []Attempt) error
	Delete(ctx context.Context, key string) error
}

// attemptKey is a KV-safe key for a job generation.
func (j Job) attemptKey() string {
	sum := sha256.Sum256([]byte(j.recordID()))
	return j.Target + "." + hex.EncodeToString(sum[:16])
}
