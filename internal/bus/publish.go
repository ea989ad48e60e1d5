package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Message is one message to make durable.
type Message struct {
	Subject string
	ID      string // Nats-Msg-Id: the stream drops a second message with this ID
	Data    []byte
	Header  nats.Header
}

// Ack is the stream's answer to one publish.
type Ack struct {
	Sequence  uint64
	Duplicate bool
}

// Publish sends all messages asynchronously and waits until every one is
// stored or ctx ends. It returns the first error; the caller must treat the
// whole batch as not durable and let its sender retry, which the message IDs
// make harmless.
func (b *Bus) Publish(ctx context.Context, msgs []Message) ([]Ack, error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		if m.ID == "" {
			return nil, fmt.Errorf("publish %s: message without id", m.Subject)
		}
		nm := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: m.Header}
		f, err := b.js.PublishMsgAsync(nm, jetstream.WithMsgID(m.ID))
		if err != nil {
			return nil, fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		futures[i] = f
	}
	acks := make([]Ack, len(msgs))
	for i, f := range futures {
		select {
		case pa := <-f.Ok():
			acks[i] = Ack{Sequence: pa.Sequence, Duplicate: pa.Duplicate}
		case err := <-f.Err():
			return nil, fmt.Errorf("publish %s: %w", msgs[i].Subject, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("publish %s: %w", msgs[i].Subject, errors.Join(ErrNotDurable, ctx.Err()))
		}
	}
	return acks, nil
}

// ErrNotDurable marks a publish whose outcome is unknown.
var ErrNotDurable = errors.New("message not confirmed durable")
