package bus

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// Metadata keys the bus adds to every consumed Watermill message.
const (
	// MetaDelivered is the JetStream delivery count: 1 on the first attempt.
	MetaDelivered = "lw_delivered"
	// MetaStreamSeq is the message's sequence in its stream.
	MetaStreamSeq = "lw_stream_seq"
	// MetaUnreadable holds why a message could not be unmarshalled; the
	// handler must dead-letter it rather than let it loop.
	MetaUnreadable = "lw_unreadable"
)

// Delivered returns the delivery count of a consumed message (1 if unknown).
func Delivered(m *message.Message) int {
	n, err := strconv.Atoi(m.Metadata.Get(MetaDelivered))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// Delay computes the redelivery delay after a failed attempt; delivered is
// the attempt that just failed (1-based).
type Delay func(delivered uint64) time.Duration

// WaitTime implements watermill-nats' Delay.
func (d Delay) WaitTime(delivered uint64) time.Duration { return d(delivered) }

// Subscriber returns a Watermill subscriber bound to the pre-created durable
// consumer spec, on a connection of its own. It never creates or deletes a
// consumer (nats.Bind) and acks only when the handler acks (nats.ManualAck):
// without ManualAck nats.go acks every message the handler gave up on, and
// without Bind the library deletes the consumer on Close (docs/decisions/0002).
// handlers is the number of messages processed at once by this process.
// Subscribe to spec.Filter.
func (b *Bus) Subscriber(spec ConsumerSpec, handlers int, delay Delay, log watermill.LoggerAdapter) (message.Subscriber, error) {
	if spec.AckWait < 2*time.Second {
		return nil, errors.New("subscriber: ack wait below 2s")
	}
	nc, err := b.Connect(b.cfg.Name + "/" + spec.Durable)
	if err != nil {
		return nil, err
	}
	cfg := wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      unmarshaler{},
		QueueGroupPrefix: spec.Durable,
		SubscribersCount: handlers,
		// Watermill's own wait for the handler must end before the server
		// redelivers, or two handlers run the same message at once.
		AckWaitTimeout: spec.AckWait - time.Second,
		CloseTimeout:   30 * time.Second,
		SubjectCalculator: func(queueGroup, topic string) *wmnats.SubjectDetail {
			return &wmnats.SubjectDetail{Primary: topic, QueueGroup: queueGroup}
		},
		JetStream: wmnats.JetStreamConfig{
			// A lost async ack costs one redelivery, which every handler
			// tolerates; a synchronous ack costs ~3x throughput.
			AckAsync:          true,
			DurableCalculator: func(string, string) string { return spec.Durable },
			SubscribeOptions:  []nats.SubOpt{nats.Bind(spec.Stream, spec.Durable), nats.ManualAck()},
		},
	}
	if delay != nil {
		cfg.NakDelay = delay
	}
	sub, err := wmnats.NewSubscriberWithNatsConn(nc, cfg, log)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("subscriber %s: %w", spec.Durable, err)
	}
	return sub, nil
}

// unmarshaler wraps NATSMarshaler, adds JetStream delivery metadata and
// never fails: watermill-nats neither acks nor naks a message it cannot
// unmarshal, so a failure here would redeliver it forever.
type unmarshaler struct{}

func (unmarshaler) Unmarshal(m *nats.Msg) (*message.Message, error) {
	msg, err := (&wmnats.NATSMarshaler{}).Unmarshal(m)
	if err != nil {
		msg = message.NewMessage(watermill.NewUUID(), m.Data)
		msg.Metadata.Set(MetaUnreadable, err.Error())
	}
	if msg.UUID == "" {
		msg.UUID = m.Header.Get(nats.MsgIdHdr)
	}
	if md, err := m.Metadata(); err == nil {
		msg.Metadata.Set(MetaDelivered, strconv.FormatUint(md.NumDelivered, 10))
		msg.Metadata.Set(MetaStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	}
	return msg, nil
}
