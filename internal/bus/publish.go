package bus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
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

// Publisher publishes on connections of its own, each call on the next
// one. The server reads each connection in one goroutine, so giving intake
// its own publisher keeps an IdP's request from queueing behind the
// pipeline's traffic. And a connection serializes its publishers: the
// client writes under the connection's lock, and to the embedded server
// that write is a pipe that returns only once the server has read it — in
// a trace, intake requests waited 6–14 ms on that lock while one of them
// flushed; with several connections they wait less.
type Publisher struct {
	conns []pubConn
	next  atomic.Uint32
}

type pubConn struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// NewPublisher opens conns (at least one) publishing connections.
func (b *Bus) NewPublisher(name string, conns int) (*Publisher, error) {
	p := &Publisher{}
	for i := range max(conns, 1) {
		cname := b.cfg.Name + "/" + name
		if i > 0 {
			cname += fmt.Sprintf("#%d", i+1)
		}
		nc, err := b.Connect(cname)
		if err != nil {
			p.Close()
			return nil, err
		}
		js, err := b.jetStream(nc)
		if err != nil {
			nc.Close()
			p.Close()
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		p.conns = append(p.conns, pubConn{nc: nc, js: js})
	}
	return p, nil
}

// Close flushes (briefly, if connected) and closes the connections.
func (p *Publisher) Close() {
	for _, c := range p.conns {
		if c.nc.IsConnected() {
			_ = c.nc.FlushTimeout(2 * time.Second)
		}
		c.nc.Close()
	}
}

// Publish sends on the bus's main connection (see Publisher.Publish).
func (b *Bus) Publish(ctx context.Context, msgs []Message) ([]Ack, error) {
	return (&Publisher{conns: []pubConn{{nc: b.nc, js: b.js}}}).Publish(ctx, msgs)
}

// Publish sends all messages asynchronously and waits until every one is
// stored or ctx ends. It returns the first error; the caller must treat the
// whole batch as not durable and let its sender retry, which the message IDs
// make harmless.
func (p *Publisher) Publish(ctx context.Context, msgs []Message) ([]Ack, error) {
	js := p.conns[int(p.next.Add(1)%uint32(len(p.conns)))].js
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
		f, err := js.PublishMsgAsync(nm, opts...)
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
