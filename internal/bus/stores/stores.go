// Package stores adapts NATS JetStream (streams and KV buckets) to the
// ports of the core packages: the event publisher, the audit recorder, the
// revocation queue and dead letters, and every piece of state the worker
// keeps in KV (attempts, poller and stream state, SCIM resources, the
// ID-JAG inventory, Universal Logout replays, expected confirmations). With
// internal/bus it is the only code that speaks NATS.
package stores

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/oktalog"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/scim"
	"github.com/lifecycle-worker/lifecycle-worker/internal/packed"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Sink adapts the bus to the ports of the core packages: it is the
// events.Publisher, the audit.Recorder and the revoke.Queue.
type Sink struct {
	Pub *bus.Publisher
	// Recorded is told of each record once it is durable (nil: nobody).
	Recorded func(audit.Record)
	// Plain writes batches, record groups and records unpacked (nats.pack:
	// false; decisions 0021, 0024).
	Plain bool
}

var (
	_ events.Publisher = Sink{}
	_ audit.Recorder   = Sink{}
	_ revoke.Queue     = Sink{}
)

func (s Sink) PublishEvents(ctx context.Context, evs []events.Event) ([]events.Publication, error) {
	msgs := make([]bus.Message, len(evs))
	for i, ev := range evs {
		if err := ev.Validate(); err != nil {
			return nil, err
		}
		data, err := ev.Encode()
		if err != nil {
			return nil, fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		msgs[i] = bus.Message{Subject: ev.Topic(), ID: ev.ID, Data: data}
	}
	acks, err := s.Pub.Publish(ctx, msgs)
	if err != nil {
		return nil, err
	}
	pubs := make([]events.Publication, len(acks))
	for i, a := range acks {
		pubs[i] = events.Publication{Duplicate: a.Duplicate, Sequence: a.Sequence}
	}
	return pubs, nil
}

// Record makes recs durable, as few AUDIT messages as they fit in: one
// record alone is its own message on its type's subject, as every record
// was before groups; several travel as groups (audit.GroupHeader) of up to
// audit.MaxGroup records and maxMessageBytes, in their order; a larger
// record travels alone.
func (s Sink) Record(ctx context.Context, recs ...audit.Record) error {
	bodies := make([][]byte, len(recs))
	for i, r := range recs {
		if r.ID == "" || r.Type == "" || r.Time.IsZero() {
			return fmt.Errorf("audit record without id, type or time: %+v", r)
		}
		r.Seq = 0 // assigned by the index
		data, err := audit.Encode(r)
		if err != nil {
			return fmt.Errorf("encode audit record %s: %w", r.ID, err)
		}
		bodies[i] = data
	}
	var msgs []bus.Message
	for from := 0; from < len(recs); {
		to, size := from+1, len(bodies[from])
		for to < len(recs) && to-from < audit.MaxGroup && size+1+len(bodies[to]) <= maxMessageBytes {
			size += 1 + len(bodies[to])
			to++
		}
		msgs = append(msgs, s.recordMessage(recs[from:to], bodies[from:to]))
		from = to
	}
	_, err := s.Pub.Publish(ctx, msgs)
	if err == nil {
		for _, r := range recs {
			if s.Recorded != nil {
				s.Recorded(r)
			}
		}
	}
	return err
}

// recordMessage is the AUDIT message of recs, encoded as bodies. No message
// ID: the index marks a record written again (a consumer that ran again)
// instead of the server remembering every ID for a day (docs/decisions/0014).
func (s Sink) recordMessage(recs []audit.Record, bodies [][]byte) bus.Message {
	if len(recs) == 1 {
		return s.pack(bus.Message{Subject: recs[0].Topic(), ID: recs[0].ID, Data: bodies[0], Kept: true})
	}
	return s.pack(bus.Message{Subject: audit.GroupSubject, ID: "group/" + recs[0].ID, Data: audit.JoinGroup(bodies), Kept: true,
		Header: nats.Header{audit.GroupHeader: []string{strconv.Itoa(len(recs))}}})
}

// pack packs the body of m — a batch, a group or a single record — where
// that is worth it (docs/decisions/0021, 0024), unless the sink writes
// plain.
func (s Sink) pack(m bus.Message) bus.Message {
	if s.Plain {
		return m
	}
	if data, encoding := packed.Pack(m.Data); encoding != "" {
		m.Data = data
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set(packed.EncodingHeader, encoding)
	}
	return m
}

// Enqueue makes jobs durable: the fresh jobs of one target travel together,
// up to revoke.MaxBatch in one message (revoke.Batch), while a replayed or
// continuing job is a message of its own, with its own delay and delivery
// count. A batch's ID is derived from its jobs' IDs and travels in a header
// (revoke.BatchIDHeader), not as its message ID: the stream would keep an
// entry for every batch for its dedup window, to drop a batch that is
// published again alike only when a plan is written again in exactly the
// same group.
func (s Sink) Enqueue(ctx context.Context, jobs []revoke.Job) error {
	var msgs []bus.Message
	// Jobs are large: group them by index, not by copy.
	byTarget := map[string][]int{}
	var order []string
	for i, j := range jobs {
		if j.Replay > 0 || j.Continues {
			m, err := jobMessage(j)
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
			continue
		}
		if _, ok := byTarget[j.Target]; !ok {
			order = append(order, j.Target)
		}
		byTarget[j.Target] = append(byTarget[j.Target], i)
	}
	for _, target := range order {
		// A batch ends at revoke.MaxBatch jobs or maxMessageBytes, so that a
		// batch of jobs with large scopes stays far below the server's
		// largest message.
		var b batchWriter
		for _, i := range byTarget[target] {
			data, err := revoke.EncodeJob(jobs[i])
			if err != nil {
				return fmt.Errorf("encode job %s: %w", jobs[i].ID, err)
			}
			if b.n == revoke.MaxBatch || (b.n > 0 && b.data.Len()+len(data) > maxMessageBytes) {
				msgs = append(msgs, b.message(target, s.pack))
			}
			b.add(&jobs[i], data)
		}
		if b.n > 0 {
			msgs = append(msgs, b.message(target, s.pack))
		}
	}
	_, err := s.Pub.Publish(ctx, msgs)
	return err
}

// maxMessageBytes bounds a batch message's jobs and a group message's
// records (the server's default largest message is 1 MiB).
const maxMessageBytes = 256 << 10

func jobMessage(j revoke.Job) (bus.Message, error) {
	data, err := revoke.EncodeJob(j)
	if err != nil {
		return bus.Message{}, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	return encodedJobMessage(j, data), nil
}

// encodedJobMessage is j's own message, from its encoding data.
func encodedJobMessage(j revoke.Job, data []byte) bus.Message {
	id := j.ID
	switch {
	case j.Continues:
		id = fmt.Sprintf("%s/r%d/continues", j.ID, j.Replay)
	case j.Replay > 0:
		id = fmt.Sprintf("%s/replay/%d", j.ID, j.ReplayOf)
	}
	return bus.Message{Subject: revoke.Topic(j.Target), ID: id, Data: data}
}

// batchWriter collects the encoded jobs of one batch message
// (revoke.Batch) and the hash of their IDs, the message's ID.
type batchWriter struct {
	n     int
	first *revoke.Job // the first job and its encoding: a batch of one is its message
	data1 []byte
	data  bytes.Buffer
	ids   hash.Hash
}

func (b *batchWriter) add(j *revoke.Job, data []byte) {
	if b.ids == nil {
		b.ids = sha256.New()
	}
	if b.n == 0 {
		b.data.WriteString(`{"jobs":[`)
		b.first, b.data1 = j, data
	} else {
		b.data.WriteByte(',')
	}
	b.data.Write(data)
	b.ids.Write([]byte(j.ID))
	b.ids.Write([]byte{0})
	b.n++
}

// message ends the batch and starts the next: a batch of one job is that
// job's own message; a batch of several goes through pack.
func (b *batchWriter) message(target string, pack func(bus.Message) bus.Message) bus.Message {
	defer func() { b.n, b.first, b.data1 = 0, nil, nil; b.data = bytes.Buffer{}; b.ids.Reset() }()
	if b.n == 1 {
		return encodedJobMessage(*b.first, b.data1)
	}
	b.data.WriteString(`]}`)
	id := "batch/" + hex.EncodeToString(b.ids.Sum(nil)[:16])
	return pack(bus.Message{Subject: revoke.Topic(target), ID: id, Data: b.data.Bytes(), Kept: true,
		Header: nats.Header{revoke.BatchHeader: []string{strconv.Itoa(b.n)}, revoke.BatchIDHeader: []string{id}}})
}

func (s Sink) DeadLetter(ctx context.Context, dl revoke.DeadLetter) error {
	data, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("encode dead letter %s: %w", dl.Job.ID, err)
	}
	_, err = s.Pub.Publish(ctx, []bus.Message{{
		Subject: revoke.DLQTopic(dl.Job.Target),
		ID:      fmt.Sprintf("%s/r%d/dlq/%d", dl.Job.ID, dl.Job.Replay, dl.Attempts),
		Data:    data,
	}})
	return err
}

// DLQ adapts the bus to revoke.DLQStore.
type DLQ struct{ Bus *bus.Bus }

func (d DLQ) Scan(ctx context.Context, filter string, fn func(uint64, []byte) (bool, error)) error {
	return d.Bus.Scan(ctx, bus.StreamDLQ, filter, fn)
}

func (d DLQ) Delete(ctx context.Context, seq uint64) error {
	return d.Bus.DeleteMsg(ctx, bus.StreamDLQ, seq)
}

// getJSON reads the JSON value at key; a missing key is the zero value.
func getJSON[T any](ctx context.Context, kv jetstream.KeyValue, key, what string) (T, error) {
	var v T
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return v, nil
	}
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return v, fmt.Errorf("%s: %w", what, err)
	}
	return v, nil
}

// putJSON writes v as JSON at key.
func putJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, key, b)
	return err
}

// deleteKey deletes key; a missing key is deleted already.
func deleteKey(ctx context.Context, kv jetstream.KeyValue, key string) error {
	if err := kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}

// Attempts adapts a KV bucket to revoke.AttemptLog.
type Attempts struct{ KV jetstream.KeyValue }

func (k Attempts) Load(ctx context.Context, key string) ([]revoke.Attempt, error) {
	return getJSON[[]revoke.Attempt](ctx, k.KV, key, "attempt log "+key)
}

func (k Attempts) Save(ctx context.Context, key string, attempts []revoke.Attempt) error {
	return putJSON(ctx, k.KV, key, attempts)
}

func (k Attempts) Delete(ctx context.Context, key string) error { return deleteKey(ctx, k.KV, key) }

// Progress adapts a KV bucket to revoke.Progress: "batch.<hash of the
// batch's ID>" holds the IDs of its finished jobs while it runs.
type Progress struct{ KV jetstream.KeyValue }

func (k Progress) key(batch string) string {
	sum := sha256.Sum256([]byte(batch))
	return "batch." + hex.EncodeToString(sum[:16])
}

func (k Progress) Load(ctx context.Context, batch string) ([]string, error) {
	return getJSON[[]string](ctx, k.KV, k.key(batch), "batch progress "+batch)
}

func (k Progress) Save(ctx context.Context, batch string, done []string) error {
	return putJSON(ctx, k.KV, k.key(batch), done)
}

func (k Progress) Delete(ctx context.Context, batch string) error {
	return deleteKey(ctx, k.KV, k.key(batch))
}

// markRange is how many consecutive LIFECYCLE sequences share a key of
// the planned bucket.
const markRange = 256

// markTries bounds how often a mark is written again after another writer
// changed its key first.
const markTries = 16

// Marks adapts the planned bucket (bus.KVPlanned) to revoke.Marks. The
// marks of markRange consecutive LIFECYCLE sequences share a key, "r.", the
// stream's epoch and the range's number; its value holds 4 bytes per
// sequence: zero where no event is marked, else the first 4 bytes of the
// SHA-256 of the marked event's ID, lowest bit set. So the bucket holds a
// key per range of events, not per event: the server keeps every subject
// of a stream in memory, and a key per event cost ~230 B for each event of
// the bucket's hour (docs/decisions/0025). A LIFECYCLE made anew numbers
// its events from 1 again under another epoch, and the hash tells the
// marked event from another at the same sequence should the epoch be
// stale. A key expires with the bucket's TTL, an hour after its last mark.
// Writers of one range take turns by the key's revision; a writer
// remembers the last ranges it wrote, so that its next marks there take
// one write, not a read and a write.
type Marks struct {
	kv    jetstream.KeyValue
	epoch string
	mu    sync.Mutex
	known map[string]markValue
}

// markValue is a range's value as this process last wrote it.
type markValue struct {
	val []byte
	rev uint64
}

// markKnown bounds the ranges a writer remembers.
const markKnown = 4

// NewMarks returns the marks kept in kv for the LIFECYCLE stream created at
// created (its epoch).
func NewMarks(kv jetstream.KeyValue, created time.Time) *Marks {
	return &Marks{kv: kv, epoch: strconv.FormatInt(created.UnixNano(), 36), known: map[string]markValue{}}
}

func (m *Marks) key(seq uint64) string {
	return "r." + m.epoch + "." + strconv.FormatUint(seq/markRange, 10)
}

// markOf is what a mark of event id holds: never zero.
func markOf(id string) uint32 {
	sum := sha256.Sum256([]byte(id))
	return binary.BigEndian.Uint32(sum[:4]) | 1
}

func (m *Marks) Planned(ctx context.Context, mk revoke.Mark) (bool, error) {
	if mk.Seq == 0 {
		return false, nil
	}
	e, err := m.kv.Get(ctx, m.key(mk.Seq))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	v, i := e.Value(), 4*(mk.Seq%markRange)
	return len(v) == 4*markRange && binary.BigEndian.Uint32(v[i:]) == markOf(mk.Event), nil
}

func (m *Marks) MarkPlanned(ctx context.Context, marks []revoke.Mark) error {
	byRange := map[uint64][]revoke.Mark{}
	var ranges []uint64
	for _, mk := range marks {
		if mk.Seq == 0 {
			continue
		}
		r := mk.Seq / markRange
		if _, ok := byRange[r]; !ok {
			ranges = append(ranges, r)
		}
		byRange[r] = append(byRange[r], mk)
	}
	var errs []error
	for _, r := range ranges {
		if err := m.mark(ctx, byRange[r]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mark writes marks, all of one range, into the range's key at the
// revision last seen: the one this process wrote, else the one read; read
// and written again if another writer came between.
func (m *Marks) mark(ctx context.Context, marks []revoke.Mark) error {
	key := m.key(marks[0].Seq)
	m.mu.Lock()
	known, ok := m.known[key]
	m.mu.Unlock()
	for try := 1; ; try++ {
		val, rev := make([]byte, 4*markRange), uint64(0)
		if ok {
			copy(val, known.val)
			rev, ok = known.rev, false
		} else {
			e, err := m.kv.Get(ctx, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return fmt.Errorf("planned marks %s: %w", key, err)
			default:
				rev = e.Revision()
				if len(e.Value()) == len(val) { // else not a range of marks: written over
					copy(val, e.Value())
				}
			}
		}
		for _, mk := range marks {
			binary.BigEndian.PutUint32(val[4*(mk.Seq%markRange):], markOf(mk.Event))
		}
		var err error
		if rev == 0 {
			rev, err = m.kv.Create(ctx, key, val)
		} else {
			rev, err = m.kv.Update(ctx, key, val, rev)
		}
		if err == nil {
			m.remember(key, markValue{val: val, rev: rev})
			return nil
		}
		raced := errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
		if !raced || try == markTries {
			m.forget(key)
			return fmt.Errorf("planned marks %s: %w", key, err)
		}
	}
}

func (m *Marks) remember(key string, v markValue) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.known[key] = v
	for k := range m.known {
		if len(m.known) <= markKnown {
			break
		}
		if k != key {
			delete(m.known, k)
		}
	}
}

func (m *Marks) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.known, key)
}

// State adapts a KV bucket to oktalog.State.
type State struct{ KV jetstream.KeyValue }

func (k State) Get(ctx context.Context, key string) ([]byte, uint64, bool, error) {
	e, err := k.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	return e.Value(), e.Revision(), true, nil
}

func (k State) Create(ctx context.Context, key string, val []byte) (uint64, error) {
	return k.KV.Create(ctx, key, val)
}

func (k State) Update(ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
	return k.KV.Update(ctx, key, val, rev)
}

func (k State) Put(ctx context.Context, key string, val []byte) error {
	_, err := k.KV.Put(ctx, key, val)
	return err
}

// SCIM stores SCIM resources in a KV bucket: "<p>.<id>" the document,
// "<p>n.<hash of the unique key>" the unique index (users: the lower-cased
// userName; groups have none). p is "u" for users, "g" for groups.
type SCIM struct {
	KV     jetstream.KeyValue
	Prefix string // one per resource type: "u" users, "g" groups
}

func (k SCIM) nameKey(unique string) string {
	sum := sha256.Sum256([]byte(unique))
	return k.Prefix + "n." + hex.EncodeToString(sum[:16])
}

func (k SCIM) Get(ctx context.Context, id string) ([]byte, uint64, error) {
	e, err := k.KV.Get(ctx, k.Prefix+"."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, scim.ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	return e.Value(), e.Revision(), nil
}

func (k SCIM) Create(ctx context.Context, id, unique string, doc []byte) (uint64, error) {
	if unique == "" {
		rev, err := k.KV.Create(ctx, k.Prefix+"."+id, doc)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, scim.ErrConflict
		}
		return rev, err
	}
	if _, err := k.KV.Create(ctx, k.nameKey(unique), []byte(id)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, scim.ErrConflict
		}
		return 0, err
	}
	rev, err := k.KV.Create(ctx, k.Prefix+"."+id, doc)
	if err != nil {
		// The document could not be stored: give the name back, or it
		// stays taken by nobody.
		if derr := k.KV.Delete(ctx, k.nameKey(unique)); derr != nil {
			return 0, errors.Join(err, derr)
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, scim.ErrConflict
		}
		return 0, err
	}
	return rev, nil
}

func (k SCIM) Update(ctx context.Context, id string, doc []byte, rev uint64) (uint64, error) {
	next, err := k.KV.Update(ctx, k.Prefix+"."+id, doc, rev)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return 0, scim.ErrConflict
		}
		return 0, err
	}
	return next, nil
}

func (k SCIM) Rename(ctx context.Context, id, oldUnique, newUnique string) error {
	if _, err := k.KV.Create(ctx, k.nameKey(newUnique), []byte(id)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return scim.ErrConflict
		}
		return err
	}
	return k.KV.Delete(ctx, k.nameKey(oldUnique))
}

func (k SCIM) Delete(ctx context.Context, id, unique string) error {
	if err := deleteKey(ctx, k.KV, k.Prefix+"."+id); err != nil {
		return err
	}
	if unique == "" {
		return nil
	}
	return k.KV.Delete(ctx, k.nameKey(unique))
}

func (k SCIM) List(ctx context.Context) ([]scim.Stored, error) {
	lister, err := k.KV.ListKeysFiltered(ctx, k.Prefix+".*")
	if err != nil {
		return nil, err
	}
	var out []scim.Stored
	for key := range lister.Keys() {
		e, err := k.KV.Get(ctx, key)
		if err != nil {
			continue // deleted meanwhile
		}
		out = append(out, scim.Stored{Doc: e.Value(), Rev: e.Revision()})
	}
	return out, nil
}

// Inventory reads the ID-JAG inventory the System Log poller keeps in
// lw_state, by the subject's IdP user id.
type Inventory struct{ KV jetstream.KeyValue }

func (k Inventory) Grants(ctx context.Context, s events.Subject) ([]revoke.Grant, error) {
	if s.ID == "" {
		return nil, nil
	}
	return getJSON[[]revoke.Grant](ctx, k.KV, oktalog.InventoryKey(s.ID), "ID-JAG inventory of "+s.ID)
}

// Replays is the Universal Logout replay store on the jti bucket: the
// first subject claimed for a key stays until the bucket's TTL.
type Replays struct{ KV jetstream.KeyValue }

func (k Replays) Claim(ctx context.Context, key, subject string) (string, error) {
	if _, err := k.KV.Create(ctx, key, []byte(subject)); err == nil {
		return subject, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return "", err
	}
	e, err := k.KV.Get(ctx, key)
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// Confirmations keeps revocations awaiting a signed confirmation, one entry
// under each identifier of the subject (a SET may name the subject by any
// of them); the latest revocation of a subject at a target is the one a
// confirmation ends.
type Confirmations struct{ KV jetstream.KeyValue }

func (k Confirmations) Expect(ctx context.Context, a revoke.Awaiting) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	for _, key := range revoke.ConfirmKeys(a.Target, a.Subject) {
		if _, err := k.KV.Put(ctx, key, b); err != nil {
			return err
		}
	}
	return nil
}

func (k Confirmations) Take(ctx context.Context, target string, s events.Subject) (*revoke.Awaiting, error) {
	for _, key := range revoke.ConfirmKeys(target, s) {
		e, err := k.KV.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var a revoke.Awaiting
		if err := json.Unmarshal(e.Value(), &a); err != nil {
			return nil, fmt.Errorf("awaiting confirmation %s: %w", key, err)
		}
		for _, other := range revoke.ConfirmKeys(a.Target, a.Subject) {
			if err := deleteKey(ctx, k.KV, other); err != nil {
				return nil, err
			}
		}
		return &a, nil
	}
	return nil, nil
}
