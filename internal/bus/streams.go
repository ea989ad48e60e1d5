package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names and subject roots (DESIGN §6).
const (
	StreamLifecycle = "LIFECYCLE"
	StreamRevoke    = "REVOKE"
	StreamDLQ       = "REVOKE_DLQ"
	StreamAudit     = "AUDIT"
)

// dedupWindow is how long a message ID is remembered. A day covers Okta's
// retry, the System Log backstop's overlap and an IdP's retry after an outage.
const dedupWindow = 24 * time.Hour

func (b *Bus) streamConfigs() []jetstream.StreamConfig {
	r := b.cfg.Replicas
	return []jetstream.StreamConfig{
		{
			Name:        StreamLifecycle,
			Description: "lifecycle events from every intake, deduplicated by event id",
			Subjects:    []string{"lifecycle.>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      90 * 24 * time.Hour,
			Duplicates:  dedupWindow,
			Storage:     jetstream.FileStorage,
			Replicas:    r,
		},
		{
			Name:        StreamRevoke,
			Description: "revocation jobs, one subject per target",
			Subjects:    []string{"revoke.>"},
			Retention:   jetstream.WorkQueuePolicy,
			Duplicates:  dedupWindow,
			Storage:     jetstream.FileStorage,
			Replicas:    r,
		},
		{
			Name:        StreamDLQ,
			Description: "revocation jobs that failed for good, replayable",
			Subjects:    []string{"revoke_dlq.>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      365 * 24 * time.Hour,
			Duplicates:  dedupWindow,
			Storage:     jetstream.FileStorage,
			Replicas:    r,
		},
		{
			Name:        StreamAudit,
			Description: "the audit log; SQLite indexes are projections of it",
			Subjects:    []string{"audit.>"},
			Retention:   jetstream.LimitsPolicy, // kept forever by default
			Duplicates:  dedupWindow,
			Storage:     jetstream.FileStorage,
			Replicas:    r,
		},
	}
}

// KV buckets.
const (
	// KVAttempts holds the attempts of unfinished revocation jobs.
	KVAttempts = "lw_attempts"
	// KVState holds small singleton state: the System Log cursor and
	// lease, the ID-JAG inventory.
	KVState = "lw_state"
	// KVSCIM holds the SCIM users the IdPs provisioned.
	KVSCIM = "lw_scim"
)

func (b *Bus) provisionStreams(ctx context.Context) error {
	for _, sc := range b.streamConfigs() {
		if _, err := b.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("provision stream %s: %w", sc.Name, err)
		}
	}
	// Entries expire: a job that ended without clearing its entry (a crash
	// at the wrong moment) must not keep it forever.
	if _, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: KVAttempts, Description: "attempts of unfinished revocation jobs", History: 1,
		TTL: 90 * 24 * time.Hour, Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("provision kv %s: %w", KVAttempts, err)
	}
	if _, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: KVState, Description: "system log cursor and lease, ID-JAG inventory", History: 1,
		Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("provision kv %s: %w", KVState, err)
	}
	if _, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: KVSCIM, Description: "SCIM users", History: 1, Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("provision kv %s: %w", KVSCIM, err)
	}
	return nil
}

// KV returns a provisioned key-value bucket.
func (b *Bus) KV(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	return b.js.KeyValue(ctx, bucket)
}

// ConsumerSpec describes one durable pull consumer that a Watermill
// subscriber binds to.
type ConsumerSpec struct {
	Stream  string
	Durable string
	Filter  string
	// MaxAckPending bounds messages in flight across all replicas.
	MaxAckPending int
	// AckWait is how long the server waits for an ack before redelivering;
	// it must exceed the longest handler run.
	AckWait time.Duration
}

// EnsureConsumer creates or updates the durable pull consumer. Deliveries
// are never limited (MaxDeliver -1): the handler decides when a message has
// had enough attempts and moves it to the dead-letter stream, so the server
// never drops one silently. MaxAckPending bounds the messages in flight
// across all replicas.
func (b *Bus) EnsureConsumer(ctx context.Context, spec ConsumerSpec) error {
	_, err := b.js.CreateOrUpdateConsumer(ctx, spec.Stream, jetstream.ConsumerConfig{
		Durable:       spec.Durable,
		FilterSubject: spec.Filter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       spec.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: spec.MaxAckPending,
		Replicas:      b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("provision consumer %s/%s: %w", spec.Stream, spec.Durable, err)
	}
	return nil
}

// Scan reads every message of stream on filter, oldest first, with an
// ordered consumer (no server state is left behind), until fn returns false
// or the messages present at the start are read.
func (b *Bus) Scan(ctx context.Context, stream, filter string, fn func(seq uint64, data []byte) (bool, error)) error {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("scan %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("scan %s: %w", stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := b.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return fmt.Errorf("scan %s: %w", stream, err)
	}
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("scan %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("scan %s: %w", stream, err)
			}
			more, err := fn(md.Sequence.Stream, m.Data())
			if err != nil || !more {
				return err
			}
			if md.Sequence.Stream >= last || md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("scan %s: %w", stream, err)
		}
		if n == 0 {
			return nil // nothing (more) matches the filter
		}
	}
}

// DeleteMsg removes one message from a stream.
func (b *Bus) DeleteMsg(ctx context.Context, stream string, seq uint64) error {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	return s.DeleteMsg(ctx, seq)
}
