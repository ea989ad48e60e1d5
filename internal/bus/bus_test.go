package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
)

func openBus(t *testing.T, dir string) *Bus {
	t.Helper()
	b, err := Open(context.Background(), Config{Embedded: true, StoreDir: dir, Name: "test"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Nothing is acked that was not handled: a message whose handler fails is
// redelivered; one whose handler outlives the consumer's AckWait is kept in
// progress, not handed to a second handler meanwhile; closing a subscriber leaves the durable consumer in place; provisioning
// twice changes nothing.
func TestSubscriberNeverLosesMessages(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, dir)
	defer b.Close()
	ctx := context.Background()
	spec := ConsumerSpec{Stream: StreamRevoke, Durable: "exec-t1", Filter: "revoke.t1", MaxAckPending: 4, AckWait: 2 * time.Second}
	for range 2 {
		if err := b.EnsureConsumer(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Publish(ctx, []Message{{Subject: "revoke.t1", ID: "job-1", Data: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}

	var deliveries atomic.Int32
	var lastDelivered atomic.Int32
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := b.Subscriber(spec, 2, func(uint64) time.Duration { return 10 * time.Millisecond }, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	router.AddConsumerHandler("h", spec.Filter, sub, func(m *message.Message) error {
		n := deliveries.Add(1)
		lastDelivered.Store(int32(Delivered(m)))
		switch n {
		case 1:
			return errors.New("transient") // nak → redelivered
		case 2:
			// Outlives AckWait (2 s): the subscriber tells the server the
			// message is in progress, so it is not delivered a third time.
			time.Sleep(4500 * time.Millisecond)
			return nil
		}
		return nil
	})
	go func() { _ = router.Run(ctx) }()
	<-router.Running()
	waitUntil(t, "a second delivery", func() bool { return deliveries.Load() >= 2 })
	if got := lastDelivered.Load(); got != 2 {
		t.Errorf("second delivery reports delivery count %d", got)
	}
	c0, err := b.JetStream().Consumer(ctx, StreamRevoke, "exec-t1")
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the ack of the second delivery", func() bool {
		info, err := c0.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
	if n := deliveries.Load(); n != 2 {
		t.Errorf("%d deliveries; a handler that outlives AckWait must not be raced by a redelivery", n)
	}
	if err := router.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := b.JetStream().Stream(ctx, StreamRevoke)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.JetStream().Consumer(ctx, StreamRevoke, "exec-t1")
	if err != nil {
		t.Fatalf("the durable consumer is gone after the subscriber closed: %v", err)
	}
	waitUntil(t, "the ack of the third delivery", func() bool {
		info, err := c.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
	info, _ := s.Info(ctx)
	if info.State.Msgs != 0 {
		t.Errorf("work queue still holds %d messages after the ack", info.State.Msgs)
	}
}

// Messages survive a restart of the embedded server on the same store, and
// a repeated message ID is dropped.
func TestEmbeddedStoreIsDurableAndDedups(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b := openBus(t, dir)
	acks, err := b.Publish(ctx, []Message{
		{Subject: "lifecycle.okta-hook.deprovisioned", ID: "okta:1", Data: []byte(`{"id":"okta:1"}`)},
		{Subject: "lifecycle.okta-hook.deprovisioned", ID: "okta:1", Data: []byte(`{"id":"okta:1"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if acks[0].Duplicate || !acks[1].Duplicate || acks[0].Sequence != acks[1].Sequence {
		t.Errorf("acks %+v: want the second one a duplicate of the first", acks)
	}
	b.Close()

	b = openBus(t, dir)
	defer b.Close()
	s, err := b.JetStream().Stream(ctx, StreamLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("after restart LIFECYCLE holds %d messages (%v), want 1", info.State.Msgs, err)
	}
	if acks, err := b.Publish(ctx, []Message{{Subject: "lifecycle.okta-hook.deprovisioned", ID: "okta:1", Data: []byte(`{}`)}}); err != nil || !acks[0].Duplicate {
		t.Errorf("dedup window lost across restart: %+v %v", acks, err)
	}
}

// One process per embedded store: a second Open on the same dir is refused
// until the first closes.
func TestEmbeddedStoreIsExclusive(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, dir)
	if _, err := Open(context.Background(), Config{Embedded: true, StoreDir: dir, Name: "second"}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a second embedded server opened the same store")
	}
	b.Close()
	openBus(t, dir).Close()
}

// A publish whose acknowledgement never comes (a stream leader that died
// after taking the message) fails after the publish timeout instead of
// holding its caller forever, even when the caller's context has no
// deadline.
func TestLostPubAckTimesOut(t *testing.T) {
	b, err := Open(context.Background(), Config{Embedded: true, StoreDir: t.TempDir(), Name: "test", PublishTimeout: 200 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Something takes the message and never answers.
	sub, err := b.Conn().SubscribeSync("lost.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	pub, err := b.NewPublisher("lost", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	done := make(chan error, 1)
	go func() {
		_, err := pub.Publish(context.Background(), []Message{{Subject: "lost.a", ID: "x", Data: []byte("x")}})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("publish without an acknowledgement succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("publish still waiting for an acknowledgement that will never come")
	}
}

// A capped stream refuses new messages past its cap and never drops old
// ones: the publisher gets an error (intake answers 503, the IdP retries),
// and the usage shows how full it is.
func TestCappedStreamsRefuseRatherThanDrop(t *testing.T) {
	b, err := Open(context.Background(), Config{Embedded: true, StoreDir: t.TempDir(), Name: "test", StreamMaxBytes: 64 << 10}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	data := make([]byte, 1024)
	var refused error
	for i := range 200 {
		if _, err := b.Publish(ctx, []Message{{Subject: "audit.auth.failed", ID: fmt.Sprint("r", i), Data: data}}); err != nil {
			refused = err
			break
		}
	}
	if refused == nil {
		t.Fatal("200 KB went into a 64 KB stream")
	}
	s, err := b.JetStream().Stream(ctx, StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq != 1 {
		t.Errorf("the oldest record was dropped: first seq %d", info.State.FirstSeq)
	}
	usage, err := b.CappedUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range usage {
		if u.Stream == StreamAudit && u.Ratio() < 0.9 {
			t.Errorf("AUDIT usage %+v after a refusal", u)
		}
	}
}

// SCIM resources are read right after they are written (an IdP creates a
// user, then patches it): their bucket takes no direct gets, which any
// replica would answer, a lagging one with "not found" (the compose
// cluster showed it). The other buckets are read long after their writes.
// A bucket created by an earlier version is brought to this layout.
func TestSCIMBucketReadsFromTheLeader(t *testing.T) {
	dir := t.TempDir()
	open := func() *Bus {
		b, err := Open(context.Background(), Config{Embedded: true, StoreDir: dir, Name: "test"}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctx := context.Background()
	b := open()
	allowDirect := func() bool {
		s, err := b.JetStream().Stream(ctx, "KV_"+KVSCIM)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.Config.AllowDirect
	}
	if allowDirect() {
		t.Fatal("the SCIM bucket takes direct gets")
	}
	kv, err := b.KV(ctx, KVSCIM)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx, "u.1", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "u.1"); err != nil || e.Revision() != rev {
		t.Fatalf("read after write: %v", err)
	}
	// An earlier version's bucket (direct gets on) is converted at start.
	s, _ := b.JetStream().Stream(ctx, "KV_"+KVSCIM)
	cfg := s.CachedInfo().Config
	cfg.AllowDirect = true
	if _, err := b.JetStream().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = open()
	defer b.Close()
	if allowDirect() {
		t.Error("a bucket with direct gets on is left so at start")
	}
}

// A message may have been handled before when the server counts a second
// delivery, or when it was stored before this process started (an embedded
// server killed with the worker may lose its last delivery counts): at or
// below its stream's last sequence then. One stored since, delivered once,
// is new. Unknown is "maybe"; a backlog of 0 leaves only counted
// redeliveries.
func TestMaybeSeen(t *testing.T) {
	msg := func(delivered int, seq string) *message.Message {
		m := message.NewMessage("m", nil)
		m.Metadata.Set(MetaDelivered, fmt.Sprint(delivered))
		if seq != "" {
			m.Metadata.Set(MetaStreamSeq, seq)
		}
		return m
	}
	for _, c := range []struct {
		m       *message.Message
		backlog uint64
		want    bool
	}{
		{msg(1, "101"), 100, false},
		{msg(1, "100"), 100, true},
		{msg(1, "7"), 100, true},
		{msg(2, "101"), 100, true},
		{msg(1, ""), 100, true},
		{msg(1, "-5"), 100, true},
		{msg(1, "1"), 0, false},
		{msg(3, "1"), 0, true},
	} {
		if got := MaybeSeen(c.m, c.backlog); got != c.want {
			t.Errorf("delivered %s seq %q backlog %d: %v, want %v", c.m.Metadata.Get(MetaDelivered), c.m.Metadata.Get(MetaStreamSeq), c.backlog, got, c.want)
		}
	}
}

// A consumed message's UUID is its Nats-Msg-Id, or, published without one,
// its stream and sequence: never empty, never shared.
func TestConsumedMessagesHaveAnID(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	if _, err := b.Publish(ctx, []Message{{Subject: "revoke.t1", ID: "job-1", Data: []byte(`{}`)},
		{Subject: "revoke.t1", ID: "batch/x", Data: []byte(`{}`), Kept: true}}); err != nil {
		t.Fatal(err)
	}
	cons, err := b.JetStream().CreateConsumer(ctx, StreamRevoke, jetstream.ConsumerConfig{Durable: "ids", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for m := range got.Messages() {
		ids = append(ids, toWatermill(m).UUID)
	}
	if fmt.Sprint(ids) != "[job-1 REVOKE/2]" {
		t.Fatalf("UUIDs %v, want [job-1 REVOKE/2]", ids)
	}
}

// A publisher with several connections sends each call on the next one,
// and each call's messages on one connection; all are stored.
func TestPublisherTakesItsConnectionsInTurn(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	pub, err := b.NewPublisher("intake", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := context.Background()
	for i := range 6 {
		msgs := []Message{{Subject: "lifecycle.okta.t", ID: fmt.Sprint("a", i), Data: []byte("{}")}, {Subject: "lifecycle.okta.t", ID: fmt.Sprint("b", i), Data: []byte("{}")}}
		if _, err := pub.Publish(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
	if len(pub.conns) != 3 {
		t.Fatalf("%d connections, want 3", len(pub.conns))
	}
	for i, c := range pub.conns {
		if n := c.nc.Stats().OutMsgs; n != 4 {
			t.Errorf("connection %d sent %d messages, want 4 (two calls of two)", i, n)
		}
	}
	info, err := b.js.Stream(ctx, StreamLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 12 {
		t.Errorf("%d messages stored, want 12", n)
	}
}
