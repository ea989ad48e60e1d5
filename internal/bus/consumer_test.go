package bus

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// fetchIDs pulls up to n messages from the durable consumer and returns
// their message IDs, acking those named in ack.
func fetchIDs(t *testing.T, b *Bus, durable string, n int, ack ...string) []string {
	t.Helper()
	cons, err := b.JetStream().Consumer(t.Context(), StreamRevoke, durable)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for m := range batch.Messages() {
		id := m.Headers().Get("Nats-Msg-Id")
		ids = append(ids, id)
		if slices.Contains(ack, id) {
			if err := m.DoubleAck(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ids
}

func memoryStorage(t *testing.T, b *Bus, stream, durable string) bool {
	t.Helper()
	cons, err := b.JetStream().Consumer(t.Context(), stream, durable)
	if err != nil {
		t.Fatal(err)
	}
	return cons.CachedInfo().Config.MemoryStorage
}

// On an embedded server the REVOKE work queue's consumers keep their state
// in memory (docs/decisions/0020) and every other consumer on file. A
// consumer left on file by an earlier version is replaced without losing
// what it had not acked; after a restart the consumer is provisioned again
// and delivers exactly what was never acked.
func TestWorkQueueConsumersKeepStateInMemory(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b := openBus(t, dir)
	spec := ConsumerSpec{Stream: StreamRevoke, Durable: "exec-t1", Filter: "revoke.t1", MaxAckPending: 8, AckWait: time.Minute}
	// As an earlier version left it: on file.
	if _, err := b.JetStream().CreateOrUpdateConsumer(ctx, StreamRevoke, jetstream.ConsumerConfig{
		Durable: spec.Durable, FilterSubject: spec.Filter, AckPolicy: jetstream.AckExplicitPolicy, AckWait: spec.AckWait, MaxDeliver: -1,
	}); err != nil {
		t.Fatal(err)
	}
	var jobs []Message
	for _, id := range []string{"job-1", "job-2", "job-3"} {
		jobs = append(jobs, Message{Subject: "revoke.t1", ID: id, Data: []byte(`{}`)})
	}
	if _, err := b.Publish(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	if got := fetchIDs(t, b, spec.Durable, 2, "job-1"); !slices.Equal(got, []string{"job-1", "job-2"}) {
		t.Fatalf("first fetch %v", got)
	}

	planner := ConsumerSpec{Stream: StreamLifecycle, Durable: "planner", Filter: "lifecycle.>", MaxAckPending: 8, AckWait: time.Minute}
	for _, s := range []ConsumerSpec{spec, planner, spec} {
		if err := b.EnsureConsumer(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if !memoryStorage(t, b, StreamRevoke, spec.Durable) || memoryStorage(t, b, StreamLifecycle, planner.Durable) {
		t.Fatal("want the REVOKE consumer in memory and the LIFECYCLE one on file")
	}
	// job-2 was delivered, not acked: the replacement delivers it again.
	if got := fetchIDs(t, b, spec.Durable, 3, "job-2"); !slices.Equal(got, []string{"job-2", "job-3"}) {
		t.Fatalf("after the replacement %v, want job-2 and job-3", got)
	}
	b.Close()

	b = openBus(t, dir)
	defer b.Close()
	if _, err := b.JetStream().Consumer(ctx, StreamRevoke, spec.Durable); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("after a restart the memory consumer is %v, want gone until provisioned", err)
	}
	if memoryStorage(t, b, StreamLifecycle, planner.Durable) {
		t.Fatal("the planner's consumer changed storage across a restart")
	}
	if err := b.EnsureConsumer(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if got := fetchIDs(t, b, spec.Durable, 3, "job-3"); !slices.Equal(got, []string{"job-3"}) {
		t.Fatalf("after the restart %v, want only job-3 (never acked)", got)
	}

	// Only a work queue's consumer may be replaced: another one with the
	// wrong storage is an error, and it is left alone.
	odd := ConsumerSpec{Stream: StreamAudit, Durable: "odd", Filter: "audit.>", MaxAckPending: 8, AckWait: time.Minute}
	if _, err := b.JetStream().CreateOrUpdateConsumer(ctx, StreamAudit, jetstream.ConsumerConfig{
		Durable: odd.Durable, FilterSubject: odd.Filter, AckPolicy: jetstream.AckExplicitPolicy, MemoryStorage: true,
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureConsumer(ctx, odd); err == nil || !strings.Contains(err.Error(), "storage type can not be updated") {
		t.Errorf("provisioning an AUDIT consumer of the other storage: %v, want the server's refusal", err)
	}
	if !memoryStorage(t, b, StreamAudit, odd.Durable) {
		t.Error("the AUDIT consumer was replaced")
	}
}

// Where other processes can reach the server — an external one, or an
// embedded one with a listener — every consumer keeps its state on file,
// REVOKE's included: that server may outlive this process, and every
// process that reaches it must make the same choice, or each would replace
// the consumer the other is reading.
func TestReachableServersKeepConsumersOnFile(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	external, err := Open(t.Context(), Config{URLs: []string{srv.ClientURL()}, Name: "test"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer external.Close()
	listening, err := Open(t.Context(), Config{Embedded: true, StoreDir: t.TempDir(), Name: "test", Listen: "127.0.0.1:-1",
		Users: []User{{Name: "tools", Password: "a-password-of-some-length", Roles: []string{RoleAdmin}}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer listening.Close()
	spec := ConsumerSpec{Stream: StreamRevoke, Durable: "exec-t1", Filter: "revoke.t1", MaxAckPending: 8, AckWait: time.Minute}
	for name, b := range map[string]*Bus{"external": external, "embedded with a listener": listening} {
		if err := b.EnsureConsumer(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
		if memoryStorage(t, b, StreamRevoke, spec.Durable) {
			t.Errorf("%s: a REVOKE consumer keeps its state in memory", name)
		}
	}
}
