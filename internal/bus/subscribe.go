package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Metadata keys of consumed Watermill messages.
const (
	// MetaDelivered is the JetStream delivery count: 1 on the first attempt.
	MetaDelivered = "lw_delivered"
	// MetaStreamSeq is the message's sequence in its stream.
	MetaStreamSeq = "lw_stream_seq"
	// MetaRetryIn, set by a handler before it fails, is how long the
	// message waits before its redelivery (a Go duration); it overrides the
	// subscriber's schedule (Retry-After, an open breaker).
	MetaRetryIn = "lw_retry_in"
)

// Delivered returns the delivery count of a consumed message (1 if unknown).
func Delivered(m *message.Message) int {
	n, err := strconv.Atoi(m.Metadata.Get(MetaDelivered))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// MaybeSeen reports whether a consumed message may have been handled
// before: delivered more than once, or stored at or below backlog, its
// stream's last sequence when this process started. An embedded server
// killed with the worker comes back with its consumers' last acks and
// delivery counts lost, so a message stored before the start may be a
// redelivery counted as a first one; one stored since can only have been
// delivered by this server, whose count holds. Sequences, not times: the
// stream numbers its messages in the order it stores them, whatever any
// clock says (docs/decisions/0018). Unknown is "maybe".
func MaybeSeen(m *message.Message, backlog uint64) bool {
	if Delivered(m) > 1 {
		return true
	}
	seq := StreamSeq(m)
	return seq == 0 || seq <= backlog
}

// StreamSeq returns a consumed message's sequence in its stream (0 if
// unknown; a stream numbers its messages from 1).
func StreamSeq(m *message.Message) uint64 {
	seq, err := strconv.ParseUint(m.Metadata.Get(MetaStreamSeq), 10, 64)
	if err != nil {
		return 0
	}
	return seq
}

// RetryIn asks for the message's redelivery after d when the handler fails.
func RetryIn(m *message.Message, d time.Duration) { m.Metadata.Set(MetaRetryIn, d.String()) }

// Delay computes the redelivery delay after a failed delivery (1-based).
type Delay func(delivered uint64) time.Duration

// Subscriber returns a Watermill subscriber bound to the pre-created durable
// pull consumer spec (it never creates or deletes one), processing up to
// handlers messages at once. Every message is acked only when the handler
// acks it; a nacked one is redelivered after the handler's RetryIn or, by
// default, delay(delivered). See docs/decisions/0002 for why this is ours
// and not watermill-nats'.
func (b *Bus) Subscriber(spec ConsumerSpec, handlers int, delay Delay, log watermill.LoggerAdapter) (message.Subscriber, error) {
	if handlers < 1 || delay == nil || log == nil {
		return nil, errors.New("subscriber: handlers, delay and logger are required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := b.js.Consumer(ctx, spec.Stream, spec.Durable)
	if err != nil {
		return nil, fmt.Errorf("subscriber %s: %w", spec.Durable, err)
	}
	return &subscriber{spec: spec, cons: cons, handlers: handlers, delay: delay, log: log, closing: make(chan struct{})}, nil
}

type subscriber struct {
	spec     ConsumerSpec
	cons     jetstream.Consumer
	handlers int
	delay    Delay
	log      watermill.LoggerAdapter

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup // one per subscription, until its channel closes
}

// Subscribe starts consuming; topic must be the consumer's filter. The
// channel closes once consuming has stopped (Close or ctx) and every message
// handed out is settled, which is what Watermill's router waits for.
func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if topic != s.spec.Filter {
		return nil, fmt.Errorf("subscriber %s consumes %s, not %s", s.spec.Durable, s.spec.Filter, topic)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("subscriber closed")
	}
	out := make(chan *message.Message)
	slots := make(chan struct{}, s.handlers)
	var mu sync.Mutex // guards stopped and inflight.Add against the final Wait
	stopped := false
	var inflight sync.WaitGroup
	// The callback runs on one goroutine; taking a slot before handing the
	// message on is the back-pressure that keeps at most handlers in flight.
	cc, err := s.cons.Consume(func(m jetstream.Msg) {
		select {
		case slots <- struct{}{}:
		case <-s.closing:
			return // not acked: redelivered after AckWait
		case <-ctx.Done():
			return
		}
		mu.Lock()
		if stopped {
			mu.Unlock()
			<-slots
			return
		}
		inflight.Add(1)
		mu.Unlock()
		go func() {
			defer inflight.Done()
			defer func() { <-slots }()
			s.process(ctx, m, out)
		}()
	}, jetstream.PullMaxMessages(s.handlers), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// Heartbeats missed, a consumer leader changing: nats.go pulls again.
		s.log.Info("consume interrupted", watermill.LogFields{"consumer": s.spec.Durable, "err": err.Error()})
	}))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", s.spec.Durable, err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
		case <-s.closing:
		}
		cc.Stop()
		mu.Lock()
		stopped = true
		mu.Unlock()
		inflight.Wait()
		close(out)
	}()
	return out, nil
}

// process hands one message to the router and settles it as the handler
// says: ack, or nak with a delay. Nothing is acked that was not handled.
func (s *subscriber) process(ctx context.Context, m jetstream.Msg, out chan<- *message.Message) {
	msg := toWatermill(m)
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msg.SetContext(mctx)
	select {
	case out <- msg:
	case <-s.closing:
		return
	case <-ctx.Done():
		return
	}
	// A handler may hold a message longer than AckWait (a batch of jobs):
	// tell the server it is in progress so that it is not redelivered.
	var tick <-chan time.Time
	if s.spec.AckWait > 0 {
		t := time.NewTicker(s.spec.AckWait / 3)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			if err := m.InProgress(); err != nil {
				s.log.Error("in progress", err, watermill.LogFields{"consumer": s.spec.Durable, "uuid": msg.UUID})
			}
			continue
		case <-msg.Acked():
			if err := m.Ack(); err != nil {
				s.log.Error("ack", err, watermill.LogFields{"consumer": s.spec.Durable, "uuid": msg.UUID})
			}
		case <-msg.Nacked():
			d, err := time.ParseDuration(msg.Metadata.Get(MetaRetryIn))
			if err != nil {
				d = s.delay(uint64(Delivered(msg)))
			}
			if err := m.NakWithDelay(d); err != nil {
				s.log.Error("nak", err, watermill.LogFields{"consumer": s.spec.Durable, "uuid": msg.UUID})
			}
		case <-s.closing:
			// Handed back: redelivered after AckWait. Shutdown lets handlers
			// finish before it closes subscribers, so this is the exception.
		}
		return
	}
}

// toWatermill converts a JetStream message: the payload, its headers as
// metadata, its Nats-Msg-Id as UUID (a message published without one, its
// stream and sequence), and its delivery count and sequence.
func toWatermill(m jetstream.Msg) *message.Message {
	h := m.Headers()
	md, mdErr := m.Metadata()
	id := h.Get(nats.MsgIdHdr)
	if id == "" && mdErr == nil {
		id = md.Stream + "/" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	msg := message.NewMessage(id, m.Data())
	for k, v := range h {
		if len(v) > 0 && k != nats.MsgIdHdr {
			msg.Metadata.Set(k, v[0])
		}
	}
	if mdErr == nil {
		msg.Metadata.Set(MetaDelivered, strconv.FormatUint(md.NumDelivered, 10))
		msg.Metadata.Set(MetaStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	}
	return msg
}

// Close stops consuming and waits (bounded) for messages being handed over.
func (s *subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("subscriber close: handlers still running after 30s")
	}
}
