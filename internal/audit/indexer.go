package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Indexer projects the AUDIT stream into a Store. It keeps no consumer
// state on the server: the index itself holds the cursor (its last seq), and
// an ordered consumer reads from there, so a crash between commit and ack
// cannot duplicate a record, and a fresh file rebuilds from seq 1.
type Indexer struct {
	js        jetstream.JetStream
	stream    string
	store     *Store
	log       *slog.Logger
	batchSize int
	batchWait time.Duration

	indexed atomic.Uint64 // last indexed seq, for waiters and metrics
}

// IndexerConfig configures an Indexer.
type IndexerConfig struct {
	Stream    string
	BatchSize int
	BatchWait time.Duration
}

// NewIndexer returns an indexer writing to store.
func NewIndexer(js jetstream.JetStream, store *Store, cfg IndexerConfig, log *slog.Logger) (*Indexer, error) {
	switch {
	case js == nil:
		return nil, errors.New("indexer: nil jetstream")
	case store == nil:
		return nil, errors.New("indexer: nil store")
	case log == nil:
		return nil, errors.New("indexer: nil logger")
	case cfg.Stream == "":
		return nil, errors.New("indexer: no stream")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = 20 * time.Millisecond
	}
	ix := &Indexer{js: js, stream: cfg.Stream, store: store, log: log, batchSize: cfg.BatchSize, batchWait: cfg.BatchWait}
	ix.indexed.Store(store.Head().Seq)
	return ix, nil
}

// Indexed returns the last indexed sequence.
func (ix *Indexer) Indexed() uint64 { return ix.indexed.Load() }

// Run indexes until ctx ends, restarting its consumer after errors.
func (ix *Indexer) Run(ctx context.Context) error {
	for {
		err := ix.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		ix.log.Error("audit indexer stopped; restarting from the index head", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (ix *Indexer) runOnce(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := ix.store.Head().Seq + 1
	cons, err := ix.js.OrderedConsumer(ctx, ix.stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   start,
	})
	if err != nil {
		return fmt.Errorf("audit consumer: %w", err)
	}
	msgs := make(chan jetstream.Msg, ix.batchSize)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return fmt.Errorf("audit consume: %w", err)
	}
	defer cc.Stop()

	batch := make([]Entry, 0, ix.batchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	lastCheckpoint := time.Now()
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := ix.store.Append(ctx, batch); err != nil {
			return err
		}
		ix.indexed.Store(batch[len(batch)-1].Seq)
		batch = batch[:0]
		if time.Since(lastCheckpoint) > 10*time.Second {
			lastCheckpoint = time.Now()
			if err := ix.store.Checkpoint(ctx); err != nil {
				ix.log.Warn("audit wal checkpoint", "err", err)
			}
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return flush()
		case m := <-msgs:
			rec, err := decodeEntry(m)
			if err != nil {
				return err
			}
			if len(batch) == 0 {
				timer.Reset(ix.batchWait)
			}
			batch = append(batch, rec)
			if len(batch) >= ix.batchSize {
				timer.Stop()
				if err := flush(); err != nil {
					return err
				}
			}
		case <-timer.C:
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// decodeEntry reads one AUDIT message. One that does not decode is still
// indexed, with its bytes as they are and columns that say so, so that the
// chain has no hole and the damage is visible.
func decodeEntry(m jetstream.Msg) (Entry, error) {
	md, err := m.Metadata()
	if err != nil {
		return Entry{}, fmt.Errorf("audit message metadata: %w", err)
	}
	e := Entry{Seq: md.Sequence.Stream, Body: m.Data()}
	if err := json.Unmarshal(e.Body, &e.Record); err != nil {
		e.Record = Record{ID: fmt.Sprintf("undecodable/%d", e.Seq), Time: md.Timestamp.UTC(), Type: TypeEventRejected,
			Error: "undecodable audit message: " + err.Error()}
	}
	e.Record.Seq = e.Seq
	return e, nil
}
