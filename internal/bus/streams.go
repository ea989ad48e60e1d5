package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names and subject roots (docs/architecture.md, Streams).
const (
	StreamLifecycle = "LIFECYCLE"
	StreamRevoke    = "REVOKE"
	StreamDLQ       = "REVOKE_DLQ"
	StreamAudit     = "AUDIT"
)

// dedupWindow is how long a message ID is remembered. A day covers Okta's
// retry, the System Log backstop's overlap and an IdP's retry after an outage.
const dedupWindow = 24 * time.Hour

// DefaultStreamMaxBytes caps LIFECYCLE and AUDIT when the config does not.
// The server reserves a stream's cap in its store when the stream is
// created, so the cap is also disk the worker needs free.
const DefaultStreamMaxBytes = 1 << 30

// CappedStreams are the streams with a size cap; past it the server refuses
// new messages (DiscardNew) rather than dropping old ones, so nothing
// accepted is ever lost silently: intake answers 503 and the IdP retries.
var CappedStreams = []string{StreamLifecycle, StreamAudit}

func (b *Bus) maxBytes() int64 {
	if b.cfg.StreamMaxBytes > 0 {
		return b.cfg.StreamMaxBytes
	}
	return DefaultStreamMaxBytes
}

func (b *Bus) streamConfigs() []jetstream.StreamConfig {
	r := b.cfg.Replicas
	return []jetstream.StreamConfig{
		{
			Name:        StreamLifecycle,
			Description: "lifecycle events from every intake, deduplicated by event id",
			Subjects:    []string{"lifecycle.>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      90 * 24 * time.Hour,
			MaxBytes:    b.maxBytes(),
			Discard:     jetstream.DiscardNew,
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
			Retention:   jetstream.LimitsPolicy, // kept until the cap, then new records are refused
			MaxBytes:    b.maxBytes(),
			Discard:     jetstream.DiscardNew,
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
	// KVJTI remembers the jti of every Universal Logout request (and the
	// subject it was for), longer than such a request can live.
	KVJTI = "lw_jti"
	// KVConfirm holds the revocations whose target promised a signed
	// confirmation, until it comes (or a week passes).
	KVConfirm = "lw_confirm"
	// KVPlanned remembers for an hour the events whose jobs are queued, so
	// that an event delivered again after a crash is not queued twice.
	KVPlanned = "lw_planned"
)

// provisionStreams creates what is missing and updates what differs from
// this version's configuration. Worker identities may create but not
// update or delete streams (see Permissions): a stream that differs then
// needs one start with an admin identity, and the error says so.
func (b *Bus) provisionStreams(ctx context.Context) error {
	for _, sc := range b.streamConfigs() {
		if err := b.ensureStream(ctx, sc); err != nil {
			return err
		}
	}
	// SCIM resources: an IdP creates a user and patches it the next moment,
	// so a read must see the write before it. A KV bucket's reads are
	// direct gets, which any replica answers, a lagging one with "not
	// found" (seen on the compose cluster); this bucket's stream is the
	// KV layout without direct gets, so reads go to the stream's leader.
	if err := b.ensureStream(ctx, jetstream.StreamConfig{Name: "KV_" + KVSCIM, Description: "SCIM users and groups",
		Subjects: []string{"$KV." + KVSCIM + ".>"}, MaxMsgsPerSubject: 1, MaxBytes: -1, MaxMsgs: -1, MaxMsgSize: -1, MaxConsumers: -1,
		Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas, AllowRollup: true, DenyDelete: true, Duplicates: 2 * time.Minute,
		Discard: jetstream.DiscardNew, AllowDirect: false}); err != nil {
		return err
	}
	// Entries expire: a job that ended without clearing its entry (a crash
	// at the wrong moment) must not keep it forever.
	for _, kc := range []jetstream.KeyValueConfig{
		{Bucket: KVAttempts, Description: "attempts of unfinished revocation jobs", History: 1,
			TTL: 90 * 24 * time.Hour, Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas},
		{Bucket: KVState, Description: "system log cursor and lease, ID-JAG inventory", History: 1,
			Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas},
		{Bucket: KVConfirm, Description: "revocations awaiting a signed confirmation from their target", History: 1,
			TTL: 7 * 24 * time.Hour, Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas},
		{Bucket: KVPlanned, Description: "events whose jobs are queued, for an hour", History: 1,
			TTL: time.Hour, Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas},
		{Bucket: KVJTI, Description: "jti of Universal Logout requests, for replay detection", History: 1,
			TTL: 2 * time.Hour, MaxBytes: 64 << 20, Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas},
	} {
		_, err := b.js.KeyValue(ctx, kc.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			_, err = b.js.CreateKeyValue(ctx, kc)
		}
		if err != nil {
			return fmt.Errorf("provision kv %s: %w", kc.Bucket, err)
		}
	}
	return nil
}

func (b *Bus) ensureStream(ctx context.Context, want jetstream.StreamConfig) error {
	s, err := b.js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := b.js.CreateStream(ctx, want); err != nil {
			return fmt.Errorf("provision stream %s: %w", want.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("provision stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	limit := func(n int64) int64 { return max(n, 0) } // the server stores "none" as -1
	if slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention && have.MaxAge == want.MaxAge &&
		limit(have.MaxBytes) == limit(want.MaxBytes) && have.Discard == want.Discard && have.Duplicates == want.Duplicates &&
		have.Storage == want.Storage && have.Replicas == want.Replicas && have.Description == want.Description &&
		have.AllowDirect == want.AllowDirect {
		return nil
	}
	if _, err := b.js.UpdateStream(ctx, want); err != nil {
		return fmt.Errorf("provision stream %s: it differs from this version's configuration and updating it failed (it needs an identity with the admin role): %w", want.Name, err)
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
//
// A consumer of the REVOKE work queue keeps its state in memory when this
// process alone can reach the server — embedded, with no listener
// (docs/decisions/0020): the server writes a file-backed consumer's state
// up to ten times a second, and there it would only restate what the stream
// holds. A work queue deletes what is acked, so a new consumer delivering all
// of it resumes where the old one stood; the server lives and dies with this
// process, which provisions the consumer again at every start, and what a
// restart may deliver again is told by sequence (bus.MaybeSeen), never by
// the server's counts. Every process that can reach a server makes the same
// choice, so none replaces another's consumer: one left on file there (by an
// earlier version, or a start with a listener) is replaced, its messages
// staying in the stream.
func (b *Bus) EnsureConsumer(ctx context.Context, spec ConsumerSpec) error {
	cfg := jetstream.ConsumerConfig{
		Durable:       spec.Durable,
		FilterSubject: spec.Filter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       spec.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: spec.MaxAckPending,
		Replicas:      b.cfg.Replicas,
		MemoryStorage: spec.Stream == StreamRevoke && b.server != nil && b.cfg.Listen == "",
	}
	if cfg.MemoryStorage {
		// The server cannot change a consumer's storage in place.
		if have, err := b.js.Consumer(ctx, spec.Stream, spec.Durable); err == nil && !have.CachedInfo().Config.MemoryStorage {
			if err := b.js.DeleteConsumer(ctx, spec.Stream, spec.Durable); err != nil {
				return fmt.Errorf("replace consumer %s/%s: %w", spec.Stream, spec.Durable, err)
			}
		}
	}
	if _, err := b.js.CreateOrUpdateConsumer(ctx, spec.Stream, cfg); err != nil {
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

// Usage is a capped stream's size against its cap.
type Usage struct {
	Stream          string
	Bytes, MaxBytes int64
}

// Ratio is Bytes/MaxBytes (0 without a cap).
func (u Usage) Ratio() float64 {
	if u.MaxBytes <= 0 {
		return 0
	}
	return float64(u.Bytes) / float64(u.MaxBytes)
}

// CappedUsage reads the size of every capped stream.
func (b *Bus) CappedUsage(ctx context.Context) ([]Usage, error) {
	var out []Usage
	for _, name := range CappedStreams {
		s, err := b.js.Stream(ctx, name)
		if err != nil {
			return nil, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, Usage{Stream: name, Bytes: int64(info.State.Bytes), MaxBytes: info.Config.MaxBytes})
	}
	return out, nil
}

// Pending is a durable consumer's backlog: messages not delivered yet and
// those delivered but not acknowledged.
func (b *Bus) Pending(ctx context.Context, stream, durable string) (uint64, error) {
	cons, err := b.js.Consumer(ctx, stream, durable)
	if err != nil {
		return 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// SubjectCounts counts a stream's messages per subject matching filter.
func (b *Bus) SubjectCounts(ctx context.Context, stream, filter string) (map[string]uint64, error) {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

// LastSeq is a stream's last sequence.
// Created returns when stream was created: a stream made anew numbers its
// messages from 1 again.
func (b *Bus) Created(ctx context.Context, stream string) (time.Time, error) {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return time.Time{}, err
	}
	return s.CachedInfo().Created, nil
}

func (b *Bus) LastSeq(ctx context.Context, stream string) (uint64, error) {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}
