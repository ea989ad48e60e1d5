package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lifecycle-worker/lifecycle-worker/internal/packed"
)

// Indexer projects the AUDIT stream into a Store, a row per record (a
// message carries one or a group, decision 0017). It keeps no consumer
// state on the server: the index itself holds the cursor (the message of its
// last row), and an ordered consumer reads from the next, so a crash
// between commit and ack cannot duplicate a record, and a fresh file
// rebuilds from message 1.
type Indexer struct {
	js        jetstream.JetStream
	stream    string
	store     *Store
	log       *slog.Logger
	batchSize int
	batchWait time.Duration

	ckpt        IndexerConfig
	lastCkSeq   uint64
	lastCkAt    time.Time
	indexed     atomic.Uint64 // last indexed AUDIT message, for waiters and metrics
	records     atomic.Uint64 // last indexed record's seq
	lagMS       atomic.Int64  // record time -> indexed, of the last batch's oldest record
	batches     atomic.Uint64
	checkpoints atomic.Uint64
	ahead       atomic.Uint64 // messages the index holds beyond the stream's last, when it stopped for that
}

// DefaultBatchWait is how long a batch waits to fill: under load a commit
// per 100 ms instead of per 20 ms took ~4 % off the worker's CPU in the
// benchmark (each commit writes every page its rows touched, in eight
// b-trees; five since decision 0019), and a record is queryable at most
// that much later.
const DefaultBatchWait = 100 * time.Millisecond

// IndexerConfig configures an Indexer.
type IndexerConfig struct {
	Stream    string
	BatchSize int
	BatchWait time.Duration
	// Checkpointer signs a checkpoint of the head every CheckpointEvery
	// records or CheckpointInterval, whichever comes first, and at stop;
	// nil: no checkpoints.
	Checkpointer       CheckpointSigner
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// CheckpointFile also receives each checkpoint, outside the database.
	CheckpointFile string
	// Observe, if set, is shown each record once it is in the index, in
	// stream order: every record of the trail exactly once per node (a
	// repeated copy is not shown).
	Observe func(Record)
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
		cfg.BatchWait = DefaultBatchWait
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 10000
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = time.Minute
	}
	ix := &Indexer{js: js, stream: cfg.Stream, store: store, log: log, batchSize: cfg.BatchSize, batchWait: cfg.BatchWait, ckpt: cfg}
	ix.indexed.Store(store.Head().StreamSeq)
	ix.records.Store(store.Head().Seq)
	last, err := store.lastCheckpointSeq(context.Background())
	if err != nil {
		return nil, err
	}
	ix.lastCkSeq, ix.lastCkAt = last, time.Now()
	return ix, nil
}

// Indexed returns the sequence of the last AUDIT message indexed.
func (ix *Indexer) Indexed() uint64 { return ix.indexed.Load() }

// Records returns the seq of the last record indexed: how many records the
// trail holds (a message may carry several).
func (ix *Indexer) Records() uint64 { return ix.records.Load() }

// Stats are the indexer's figures for /metrics.
type Stats struct {
	Indexed     uint64
	LagMS       int64 // of the last batch: now - the oldest record's time
	Batches     uint64
	Checkpoints uint64
	// AheadOfStream is how many AUDIT messages the index holds beyond the
	// stream's last when it stopped for that (ErrStreamBehind); 0 while it
	// indexes.
	AheadOfStream uint64
}

// Stats returns the indexer's figures.
func (ix *Indexer) Stats() Stats {
	return Stats{Indexed: ix.indexed.Load(), LagMS: ix.lagMS.Load(), Batches: ix.batches.Load(), Checkpoints: ix.checkpoints.Load(),
		AheadOfStream: ix.ahead.Load()}
}

// checkpoint signs the head when enough records or time have passed (or
// always, when final) and there is something new to sign.
func (ix *Indexer) checkpoint(ctx context.Context, final bool) error {
	if ix.ckpt.Checkpointer == nil {
		return nil
	}
	head := ix.store.Head()
	if head.Seq == ix.lastCkSeq {
		return nil
	}
	due := head.Seq-ix.lastCkSeq >= uint64(ix.ckpt.CheckpointEvery) || time.Since(ix.lastCkAt) >= ix.ckpt.CheckpointInterval
	if !due && !final {
		return nil
	}
	c := NewCheckpoint(head, time.Now(), ix.ckpt.Checkpointer)
	if err := ix.store.AddCheckpoint(ctx, c, ix.ckpt.CheckpointFile); err != nil {
		return err
	}
	ix.lastCkSeq, ix.lastCkAt = head.Seq, time.Now()
	ix.checkpoints.Add(1)
	return nil
}

// ErrStreamBehind means the index holds AUDIT messages the stream no longer
// has: its server came back from a power loss without its last messages
// (it syncs its files every two minutes unless nats.sync_always), or the
// stream was made anew. The stream's next messages take the numbers the
// index already has, so reading on from the index's head would pass over
// them unseen; the indexer stops instead.
var ErrStreamBehind = errors.New("audit: the index is ahead of the AUDIT stream")

// Run indexes until ctx ends, restarting its consumer after errors.
func (ix *Indexer) Run(ctx context.Context) error {
	for {
		err := ix.runOnce(ctx)
		if ctx.Err() != nil {
			if err != nil {
				ix.log.Error("audit indexer: final flush", "err", err)
			}
			return err
		}
		wait := time.Second
		if errors.Is(err, ErrStreamBehind) {
			// Nothing is indexed until an operator acts: the index is the
			// only copy of the records the stream lost.
			ix.log.Error("audit indexer stopped: keep this index (it holds records the stream lost), and rebuild one from the stream (audit rebuild) or restore the stream", "err", err)
			wait = 30 * time.Second
		} else {
			ix.log.Error("audit indexer stopped; restarting from the index head", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (ix *Indexer) runOnce(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	head := ix.store.Head()
	if head.StreamSeq > 0 {
		s, err := ix.js.Stream(ctx, ix.stream)
		if err != nil {
			return fmt.Errorf("audit stream: %w", err)
		}
		if last := s.CachedInfo().State.LastSeq; last < head.StreamSeq {
			ix.ahead.Store(head.StreamSeq - last)
			return fmt.Errorf("%w: the index holds messages up to %d, the stream ends at %d", ErrStreamBehind, head.StreamSeq, last)
		}
		ix.ahead.Store(0)
	}
	next := head.Seq + 1 // the next record's place in the trail
	start := head.StreamSeq + 1
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
	lastWALCheckpoint := time.Now()
	ckTicker := time.NewTicker(ix.ckpt.CheckpointInterval)
	defer ckTicker.Stop()
	flush := func(ctx context.Context) error {
		if len(batch) == 0 {
			return nil
		}
		if err := ix.store.Append(ctx, batch); err != nil {
			return err
		}
		if ix.ckpt.Observe != nil {
			for _, e := range batch {
				if e.DuplicateOf == 0 {
					ix.ckpt.Observe(e.Record)
				}
			}
		}
		oldest := batch[0].Record.Time
		for _, e := range batch[1:] {
			if e.Record.Time.Before(oldest) {
				oldest = e.Record.Time
			}
		}
		ix.lagMS.Store(time.Since(oldest).Milliseconds())
		ix.batches.Add(1)
		ix.records.Store(batch[len(batch)-1].Seq)
		ix.indexed.Store(batch[len(batch)-1].StreamSeq)
		batch = batch[:0]
		if time.Since(lastWALCheckpoint) > 10*time.Second {
			lastWALCheckpoint = time.Now()
			if err := ix.store.Checkpoint(ctx); err != nil {
				ix.log.Warn("audit wal checkpoint", "err", err)
			}
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			// Index what has arrived and sign the final head.
			stopCtx := context.WithoutCancel(ctx)
			if err := flush(stopCtx); err != nil {
				return err
			}
			return ix.checkpoint(stopCtx, true)
		case <-ckTicker.C:
			if err := ix.checkpoint(ctx, false); err != nil {
				return err
			}
		case m := <-msgs:
			if len(batch) == 0 {
				timer.Reset(ix.batchWait)
			}
			// A message's records go into one batch: it is indexed whole.
			var err error
			if batch, err = appendEntries(batch, m, next); err != nil {
				return err
			}
			next = batch[len(batch)-1].Seq + 1
			if len(batch) >= ix.batchSize {
				timer.Stop()
				if err := flush(ctx); err != nil {
					return err
				}
				if err := ix.checkpoint(ctx, false); err != nil {
					return err
				}
			}
		case <-timer.C:
			if err := flush(ctx); err != nil {
				return err
			}
			if err := ix.checkpoint(ctx, false); err != nil {
				return err
			}
		}
	}
}

// appendEntries appends the records of one AUDIT message to batch, the
// first at seq next: one, or a group (GroupHeader), packed or not
// (packed.EncodingHeader). A record that does not
// decode, or a message whose group is malformed, is still indexed, with its
// bytes as they are and columns that say so, so that the chain has no hole
// and the damage is visible.
func appendEntries(batch []Entry, m jetstream.Msg, next uint64) ([]Entry, error) {
	md, err := m.Metadata()
	if err != nil {
		return batch, fmt.Errorf("audit message metadata: %w", err)
	}
	encoding := m.Headers().Values(packed.EncodingHeader)
	data, groupErr := packed.Unpack(m.Data(), encoding)
	var bodies [][]byte
	switch {
	case groupErr != nil:
		// The row keeps the bytes and the header that made them
		// unreadable: bytes alone might read as a record, which its
		// columns do not describe.
		bodies = [][]byte{append([]byte(packed.EncodingHeader+": "+strings.Join(encoding, ", ")+"\n"), m.Data()...)}
	default:
		if bodies, groupErr = SplitGroup(data, m.Headers().Values(GroupHeader)); groupErr != nil {
			bodies = [][]byte{data}
		}
	}
	for _, body := range bodies {
		e := Entry{Seq: next, StreamSeq: md.Sequence.Stream, Body: body}
		err := groupErr
		if err == nil {
			e.Record, err = Decode(body)
		}
		if err != nil {
			e.Record = Record{ID: fmt.Sprintf("undecodable/%d", e.Seq), Time: md.Timestamp.UTC(), Type: TypeEventRejected,
				Error: "undecodable audit message: " + err.Error()}
		}
		e.Record.Seq = e.Seq
		batch = append(batch, e)
		next++
	}
	return batch, nil
}
