package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Message is one message to make durable.
type Message struct {
	Subject string
	ID      string // Nats-Msg-Id: the stream drops a second message with this ID
	Data    []byte
	Header  nats.Header
	// Kept sends no Nats-Msg-Id: the stream keeps every copy and its
	// consumer tells them apart (AUDIT: the index marks repeats). The
	// server then holds no ID for the duplicate window.
	Kept bool
}

// Ack is the stream's answer to one publish.
type Ack struct {
	Sequence  uint64
	Duplicate bool
}

// Publisher publishes on a connection of its own. The server reads each
// connection in one goroutine, so giving intake its own publisher keeps an
// IdP's request from queueing behind the pipeline's traffic.
type Publisher struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// NewPublisher opens a publishing connection.
func (b *Bus) NewPublisher(name string) (*Publisher, error) {
	nc, err := b.Connect(b.cfg.Name + "/" + name)
	if err != nil {
		return nil, err
	}
	js, err := b.jetStream(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Publisher{nc: nc, js: js}, nil
}

// Close flushes (briefly, if connected) and closes the connection.
func (p *Publisher) Close() {
	if p.nc.IsConnected() {
		_ = p.nc.FlushTimeout(2 * time.Second)
	}
	p.nc.Close()
}

// Publish sends on the bus's main connection (see Publisher.Publish).
func (b *Bus) Publish(ctx context.Context, msgs []Message) ([]Ack, error) {
	return (&Publisher{nc: b.nc, js: b.js}).Publish(ctx, msgs)
}

// Publish sends all messages asynchronously and waits until every one is
// stored or ctx ends. It returns the first error; the caller must treat the
// whole batch as not durable and let its sender retry, which the message IDs
// make harmless.
func (p *Publisher) Publish(ctx context.Context, msgs []Message) ([]Ack, error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		if m.ID == "" {
			return nil, fmt.Errorf("publish %s: message without id", m.Subject)
		}
		nm := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: m.Header}
		var opts []jetstream.PublishOpt
		if !m.Kept {
			opts = append(opts, jetstream.WithMsgID(m.ID))
		}
		f, err := p.js.PublishMsgAsync(nm, opts...)
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
